/** Instance commands: launch, init, list, info, start, stop, restart, pause, resume, delete. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { InstanceState } from "../contract/instance_state.ts";
import type {
  Instance,
  InstanceFull,
  Operation,
  Resources,
  Server,
} from "../contract/responses.ts";
import { instanceUrl } from "../contract/urls.ts";
import { type CliContext, collect, parseIntOption, parseKeyValues } from "./context.ts";
import {
  type Column,
  FORMAT_OPTION,
  formatBytes,
  formatDuration,
  parseFormat,
  printList,
} from "./format.ts";

function addresses(state: InstanceState, family: "inet" | "inet6"): string {
  return Object.entries(state.network)
    .flatMap(([dev, n]) =>
      n.addresses.filter((a) => a.family === family && a.scope === "global").map((a) =>
        `${a.address} (${dev})`
      )
    )
    .join("\n");
}

const COLUMNS: Column<InstanceFull>[] = [
  { header: "NAME", value: (i) => i.name },
  { header: "STATE", value: (i) => i.status.toUpperCase() },
  { header: "IPV4", value: (i) => addresses(i.state, "inet") },
  { header: "IPV6", value: (i) => addresses(i.state, "inet6") },
  {
    header: "TYPE",
    value: (i) => (i.type === "virtual-machine" ? "VIRTUAL-MACHINE" : "CONTAINER"),
  },
  { header: "PID", value: (i) => (i.state.pid > 0 ? String(i.state.pid) : "") },
];

async function create(
  ctx: CliContext,
  image: string,
  name: string,
  opts: {
    config?: string[];
    profile?: string[];
    profiles?: boolean;
    storage?: string;
    description?: string;
    ephemeral?: boolean;
    vm?: boolean;
  },
  start: boolean,
): Promise<void> {
  const body = {
    name,
    type: opts.vm ? "virtual-machine" : "container",
    source: { type: "image", alias: image },
    config: parseKeyValues(opts.config ?? []),
    devices: opts.storage ? { root: { type: "disk", path: "/", pool: opts.storage } } : {},
    // None given: the server's "default" profile (null); --no-profiles: none at all.
    profiles: opts.profiles === false ? [] : opts.profile ?? null,
    description: opts.description ?? "",
    ephemeral: opts.ephemeral ?? false,
  };
  console.error(`Creating ${name}`);
  await ctx.client.run("POST", "/1.0/instances", { body });
  if (start) {
    console.error(`Starting ${name}`);
    await changeState(ctx, name, { action: "start" });
  }
}

/** `outpost info` without an instance: the server, and with --resources its host and drivers. */
async function serverInfo(ctx: CliContext, resources: boolean): Promise<string> {
  const env = (await ctx.client.get<Server>("/1.0")).environment;
  const lines = [
    `Server: ${env.server} ${env.server_version} on ${env.server_name}`,
    `Kernel: ${env.kernel} ${env.kernel_version} (${env.kernel_architecture})`,
    `Drivers: ${env.driver}`,
  ];
  if (!resources) return lines.join("\n");
  const res = await ctx.client.get<Resources>("/1.0/resources");
  lines.push(
    "",
    "CPU:",
    `  Threads: ${res.cpu.total}`,
    `  Model: ${res.cpu.sockets[0]?.name ?? ""}`,
    "Memory:",
    `  Total: ${formatBytes(res.memory.total)}`,
    `  Used: ${formatBytes(res.memory.used)}`,
    "Instance drivers:",
  );
  for (const d of res.instance_drivers) {
    lines.push(
      `  ${d.name}: ${d.available ? `available (${d.version})` : `unavailable: ${d.error}`}`,
    );
    for (const [k, v] of Object.entries(d.details ?? {})) lines.push(`    ${k}: ${v}`);
  }
  return lines.join("\n");
}

async function changeState(
  ctx: CliContext,
  name: string,
  body: { action: string; force?: boolean; timeout?: number },
): Promise<Operation> {
  return await ctx.client.run("PUT", `${instanceUrl(name)}/state`, {
    body: { force: false, timeout: -1, ...body },
  }) as Operation;
}

function createOptions<T extends Command<[string, string]>>(cmd: T) {
  return cmd
    .option(
      "-c, --config <key=value>",
      "Config key/value to apply to the new instance (repeatable)",
      collect,
    )
    .option(
      "-p, --profile <name>",
      'Profile to apply, in order (repeatable; without any: "default")',
      collect,
    )
    .option("--no-profiles", "Create the instance with no profile at all")
    .option("-s, --storage <pool>", "Storage pool for the root disk (default: the profile's)")
    .option("-d, --description <text>", "Instance description")
    .option("-e, --ephemeral", "Delete the instance when it stops")
    .option("--vm", "Create a virtual machine (QEMU) instead of a container");
}

export function instanceCommands(ctx: CliContext): CommandUnknownOpts[] {
  const launch = createOptions(
    new Command("launch")
      .description("Create and start an instance from an image")
      .argument("<image>", "Image alias or fingerprint")
      .argument("<name>", "Instance name"),
  ).action(async (image, name, opts) => await create(ctx, image, name, opts, true));

  const init = createOptions(
    new Command("init")
      .description("Create an instance from an image without starting it")
      .argument("<image>", "Image alias or fingerprint")
      .argument("<name>", "Instance name"),
  ).action(async (image, name, opts) => await create(ctx, image, name, opts, false));

  const list = new Command("list")
    .alias("ls")
    .description("List instances")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<InstanceFull[]>("/1.0/instances?recursion=2");
      await printList(format, all, COLUMNS, all);
    });

  const info = new Command("info")
    .description("Show an instance's details and live state (without NAME: the server's)")
    .argument("[name]", "Instance name")
    .option("--resources", "With no NAME: also the host's CPU, memory and instance drivers")
    .action(async (name, opts) => {
      if (name === undefined) {
        console.log(await serverInfo(ctx, Boolean(opts.resources)));
        return;
      }
      const i = await ctx.client.get<InstanceFull>(`${instanceUrl(name)}?recursion=1`);
      const lines = [
        `Name: ${i.name}`,
        `Status: ${i.status.toUpperCase()}`,
        `Type: ${i.type === "virtual-machine" ? "virtual-machine" : "container"}`,
        `Architecture: ${i.architecture}`,
      ];
      if (i.state.pid > 0) lines.push(`PID: ${i.state.pid}`);
      lines.push(`Created: ${i.created_at}`);
      if (!i.last_used_at.startsWith("1970")) lines.push(`Last Used: ${i.last_used_at}`);
      if (i.description) lines.push(`Description: ${i.description}`);
      if (i.state.pid > 0) {
        lines.push("", "Resources:", `  Processes: ${i.state.processes}`);
        lines.push(
          `  CPU usage:`,
          `    CPU usage (in seconds): ${formatDuration(i.state.cpu.usage / 1e9)}`,
        );
        lines.push(
          `  Memory usage:`,
          `    Memory (current): ${formatBytes(i.state.memory.usage)}`,
          `    Memory (peak): ${formatBytes(i.state.memory.usage_peak)}`,
        );
        const nets = Object.entries(i.state.network);
        if (nets.length > 0) {
          lines.push("  Network usage:");
          for (const [dev, n] of nets) {
            lines.push(`    ${dev}:`);
            for (const a of n.addresses) {
              lines.push(
                `      ${a.family === "inet" ? "IPv4" : "IPv6"}: ${a.address} (${a.scope})`,
              );
            }
            lines.push(
              `      Bytes received: ${formatBytes(n.counters.bytes_received)}`,
              `      Bytes sent: ${formatBytes(n.counters.bytes_sent)}`,
            );
          }
        }
      }
      console.log(lines.join("\n"));
    });

  const stateCommand = (verb: string, action: string, help: string) =>
    new Command(verb)
      .description(help)
      .argument("<names...>", "Instance names")
      .action(async (names) => {
        for (const name of names) await changeState(ctx, name, { action });
      });

  const stopCommand = (verb: string, action: string, help: string) =>
    new Command(verb)
      .description(help)
      .argument("<names...>", "Instance names")
      .option("-f, --force", "Kill the instance instead of a clean shutdown")
      .option(
        "--timeout <seconds>",
        "Seconds to wait for a clean shutdown before killing (default 30)",
        parseIntOption("timeout"),
      )
      .action(async (names, opts) => {
        for (const name of names) {
          await changeState(ctx, name, {
            action,
            force: Boolean(opts.force),
            timeout: opts.timeout ?? -1,
          });
        }
      });

  const rename = new Command("rename")
    .alias("move")
    .alias("mv")
    .description("Rename a stopped instance (its snapshots follow); move is rename on one host")
    .argument("<name>", "Current name")
    .argument("<new-name>", "New name")
    .action(async (name, newName) => {
      await ctx.client.run("POST", instanceUrl(name), {
        body: { name: newName },
      });
    });

  const copy = new Command("copy")
    .alias("cp")
    .description(
      "Copy an instance, or one of its snapshots (NAME/SNAP), to a new instance (stopped), with " +
        "its snapshots unless --instance-only",
    )
    .argument("<source>", "Instance or instance/snapshot to copy")
    .argument("<name>", "The new instance's name")
    .option("--instance-only", "Copy the instance without its snapshots")
    .option(
      "-c, --config <key=value>",
      "Config key/value to set on the copy (repeatable)",
      collect,
    )
    .option("-p, --profile <name>", "Profile for the copy, in order (repeatable)", collect)
    .option("--no-profiles", "Give the copy no profile at all")
    .option("-e, --ephemeral", "Make the copy ephemeral")
    .option("-s, --start", "Start the copy")
    .action(async (source, name, opts) => {
      await ctx.client.run("POST", "/1.0/instances", {
        body: {
          name,
          source: { type: "copy", source, instance_only: opts.instanceOnly ?? false },
          config: parseKeyValues(opts.config ?? []),
          devices: {},
          profiles: opts.profiles === false ? [] : opts.profile ?? null,
          ephemeral: opts.ephemeral ?? false,
          start: opts.start ?? false,
        },
      });
    });

  const remove = new Command("delete")
    .alias("rm")
    .description("Delete instances")
    .argument("<names...>", "Instance names")
    .option("-f, --force", "Stop running instances first (forcefully)")
    .action(async (names, opts) => {
      for (const name of names) {
        const path = instanceUrl(name);
        if (opts.force) {
          const inst = await ctx.client.get<Instance>(path);
          if (inst.status !== "Stopped") {
            await changeState(ctx, name, { action: "stop", force: true });
          }
        }
        await ctx.client.run("DELETE", path);
      }
    });

  return [
    launch,
    init,
    list,
    info,
    stateCommand("start", "start", "Start instances"),
    stopCommand("stop", "stop", "Stop instances (cleanly, killed after --timeout)"),
    stopCommand("restart", "restart", "Restart instances"),
    stateCommand("pause", "freeze", "Pause (freeze) instances"),
    stateCommand("resume", "unfreeze", "Resume (unfreeze) paused instances"),
    rename,
    copy,
    remove,
  ];
}
