/** `outpost storage ...`: the storage pools and their volumes (read only yet). */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { StoragePool, StoragePoolResources, StorageVolume } from "../contract/responses.ts";
import type { CliContext } from "./context.ts";
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
    "Storage pools and their volumes (the default dir pool; read only yet)",
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
  const volume = storage.command("volume").description("Storage volumes");
  volume.command("list")
    .alias("ls")
    .description("List a pool's volumes (instances and images)")
    .argument("<pool>", "Pool name")
    .option(...FORMAT_OPTION)
    .action(async (name, opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<StorageVolume[]>(`${pool(name)}/volumes?recursion=1`);
      await printList(format, all, VOLUMES);
    });
  return storage;
}
