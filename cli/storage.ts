/** `outpost storage ...`: storage pools (list, show, info, create, delete) and custom volumes. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { StoragePool, StoragePoolResources, StorageVolume } from "../contract/responses.ts";
import { type CliContext, parseKeyValues, UsageError } from "./context.ts";
import { readInstance, writeInstance } from "./config.ts";
import { type Column, FORMAT_OPTION, formatBytes, parseFormat, printList } from "./format.ts";

const POOLS: Column<StoragePool>[] = [
  { header: "NAME", value: (p) => p.name },
  { header: "DRIVER", value: (p) => p.driver },
  { header: "SOURCE", value: (p) => p.config.source ?? "" },
  { header: "DESCRIPTION", value: (p) => p.description },
  { header: "USED BY", value: (p) => String(p.used_by.length) },
  { header: "STATE", value: (p) => p.status.toUpperCase() },
];

const VOLUMES: Column<StorageVolume>[] = [
  { header: "TYPE", value: (v) => v.type },
  { header: "NAME", value: (v) => v.name },
  { header: "CONTENT-TYPE", value: (v) => v.content_type },
  { header: "USED BY", value: (v) => String(v.used_by.length) },
];

const pool = (name: string) => `/1.0/storage-pools/${encodeURIComponent(name)}`;

export function storageCommand(ctx: CliContext): CommandUnknownOpts {
  const storage = new Command("storage").description(
    "Storage pools (dir, btrfs) and their volumes",
  );
  storage.command("list")
    .alias("ls")
    .description("List storage pools")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<StoragePool[]>("/1.0/storage-pools?recursion=1");
      await printList(format, all, POOLS);
    });
  storage.command("show")
    .description("Show a storage pool (YAML)")
    .argument("<pool>", "Pool name")
    .action(async (name) => {
      const { renderYaml } = await import("./yaml.ts");
      const body = await ctx.client.get<StoragePool>(pool(name));
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(body)));
    });
  storage.command("info")
    .description("Show a storage pool's space")
    .argument("<pool>", "Pool name")
    .action(async (name) => {
      const p = await ctx.client.get<StoragePool>(pool(name));
      const r = await ctx.client.get<StoragePoolResources>(`${pool(name)}/resources`);
      console.log(
        [
          `name: ${p.name}`,
          `driver: ${p.driver}`,
          `space used: ${formatBytes(r.space.used)}`,
          `total space: ${formatBytes(r.space.total)}`,
        ].join("\n"),
      );
    });
  storage.command("create")
    .description(
      "Create a pool: NAME DRIVER [key=value...] (dir, or btrfs: source=DIR on btrfs, or a loop file of size=5GiB)",
    )
    .argument("<pool>", "Pool name")
    .argument("<driver>", "dir or btrfs")
    .argument("[key=value...]", "Config keys (source, size)")
    .option("-d, --description <text>", "Pool description")
    .action(async (name, driver, pairs, opts) => {
      await ctx.client.run("POST", "/1.0/storage-pools", {
        body: { name, driver, description: opts.description ?? "", config: parseKeyValues(pairs) },
      });
      console.log(`Storage pool ${name} created`);
    });
  storage.command("delete")
    .alias("rm")
    .description("Delete an unused storage pool and everything on it")
    .argument("<pool>", "Pool name")
    .action(async (name) => {
      await ctx.client.run("DELETE", pool(name));
      console.log(`Storage pool ${name} deleted`);
    });
  const volume = storage.command("volume").description("Storage volumes");
  const customUrl = (p: string, v: string) => `${pool(p)}/volumes/custom/${encodeURIComponent(v)}`;
  volume.command("create")
    .description("Create a custom volume: POOL NAME [size=10GiB] (--type block for a VM disk)")
    .argument("<pool>", "Pool name")
    .argument("<volume>", "Volume name")
    .argument("[key=value...]", "Config keys (size, for block volumes)")
    .option("--type <type>", "Content type: filesystem or block", "filesystem")
    .option("-d, --description <text>", "Volume description")
    .action(async (p, name, pairs, opts) => {
      await ctx.client.run("POST", `${pool(p)}/volumes/custom`, {
        body: {
          name,
          type: "custom",
          content_type: opts.type,
          description: opts.description ?? "",
          config: parseKeyValues(pairs),
        },
      });
      console.log(`Storage volume ${name} created`);
    });
  volume.command("delete")
    .alias("rm")
    .description("Delete a custom volume (detached)")
    .argument("<pool>", "Pool name")
    .argument("<volume>", "Volume name")
    .action(async (p, name) => {
      await ctx.client.run("DELETE", customUrl(p, name));
      console.log(`Storage volume ${name} deleted`);
    });
  volume.command("show")
    .description("Show a volume (YAML): custom/NAME, or TYPE/NAME")
    .argument("<pool>", "Pool name")
    .argument("<volume>", "Volume name (custom unless TYPE/ is given)")
    .action(async (p, name) => {
      const { renderYaml } = await import("./yaml.ts");
      const slash = name.indexOf("/");
      const url = slash < 0
        ? customUrl(p, name)
        : `${pool(p)}/volumes/${encodeURIComponent(name.slice(0, slash))}/${
          encodeURIComponent(name.slice(slash + 1))
        }`;
      const body = await ctx.client.get<StorageVolume>(url);
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(body)));
    });
  volume.command("attach")
    .description(
      "Attach a custom volume to an instance: POOL VOLUME INSTANCE [DEVICE] [PATH] (a filesystem volume needs PATH)",
    )
    .argument("<pool>", "Pool name")
    .argument("<volume>", "Volume name")
    .argument("<instance>", "Instance name")
    .argument("[device]", "Device name (default: the volume's name)")
    .argument("[path]", "Where it shows in a container")
    .action(async (p, vol, instance, device, path) => {
      // As the stock client: a lone fourth argument is the path when it starts with a slash.
      if (device?.startsWith("/") && path === undefined) [device, path] = [undefined, device];
      const name = device ?? vol;
      const { body, etag } = await readInstance(ctx, instance);
      if (body.devices[name]) {
        throw new UsageError(`Device "${name}" already exists on instance "${instance}"`);
      }
      const dev: Record<string, string> = { type: "disk", pool: p, source: vol };
      if (path) dev.path = path;
      await writeInstance(ctx, instance, {
        ...body,
        devices: { ...body.devices, [name]: dev },
      }, etag);
    });
  volume.command("detach")
    .description("Detach a custom volume from an instance: POOL VOLUME INSTANCE [DEVICE]")
    .argument("<pool>", "Pool name")
    .argument("<volume>", "Volume name")
    .argument("<instance>", "Instance name")
    .argument("[device]", "Device name (default: the one on the volume)")
    .action(async (p, vol, instance, device) => {
      const { body, etag } = await readInstance(ctx, instance);
      const name = device ??
        Object.entries(body.devices).find(([, d]) =>
          d.type === "disk" && d.pool === p && d.source === vol
        )?.[0];
      if (!name || !body.devices[name]) {
        throw new UsageError(`Volume "${vol}" is not attached to instance "${instance}"`);
      }
      const devices = { ...body.devices };
      delete devices[name];
      await writeInstance(ctx, instance, { ...body, devices }, etag);
    });
  volume.command("list")
    .alias("ls")
    .description("List a pool's volumes (instances, images and custom volumes)")
    .argument("<pool>", "Pool name")
    .option(...FORMAT_OPTION)
    .action(async (name, opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<StorageVolume[]>(`${pool(name)}/volumes?recursion=1`);
      await printList(format, all, VOLUMES);
    });
  return storage;
}
