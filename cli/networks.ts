/**
 * `outpost network ...`: managed bridges (list, show, create, set, unset, get, rename, delete,
 * leases).
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Network, NetworkLease } from "../contract/responses.ts";
import { networkUrl } from "../contract/urls.ts";
import { type CliContext, parseKeyValues, setArgs, UsageError } from "./context.ts";
import { type Column, FORMAT_OPTION, parseFormat, printList } from "./format.ts";

const COLUMNS: Column<Network>[] = [
  { header: "NAME", value: (n) => n.name },
  { header: "TYPE", value: (n) => n.type },
  { header: "MANAGED", value: (n) => (n.managed ? "YES" : "NO") },
  { header: "IPV4", value: (n) => n.config["ipv4.address"] ?? "" },
  { header: "DESCRIPTION", value: (n) => n.description },
  { header: "USED BY", value: (n) => String(n.used_by.length) },
  { header: "STATE", value: (n) => n.status.toUpperCase() },
];

const LEASE_COLUMNS: Column<NetworkLease>[] = [
  { header: "HOSTNAME", value: (l) => l.hostname },
  { header: "MAC ADDRESS", value: (l) => l.hwaddr },
  { header: "IP ADDRESS", value: (l) => l.address },
  { header: "TYPE", value: (l) => l.type.toUpperCase() },
];

async function readNetwork(ctx: CliContext, name: string) {
  const res = await ctx.client.fetch("GET", networkUrl(name));
  const env = await res.json();
  if (env.type === "error") throw new UsageError(env.error);
  return { body: env.metadata as Network, etag: res.headers.get("etag") ?? "" };
}

async function writeNetwork(ctx: CliContext, name: string, n: Network, etag: string) {
  await ctx.client.run("PUT", networkUrl(name), {
    body: { config: n.config, description: n.description },
    headers: etag ? { "If-Match": etag } : {},
  });
}

export function networkCommand(ctx: CliContext): CommandUnknownOpts {
  const network = new Command("network").description(
    "Manage networks: bridges with DHCP, DNS and NAT for instances",
  );

  network.command("list")
    .alias("ls")
    .description("List managed networks")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      await printList(
        format,
        await ctx.client.get<Network[]>("/1.0/networks?recursion=1"),
        COLUMNS,
      );
    });

  network.command("show")
    .description("Show a network (YAML)")
    .argument("<name>", "Network name")
    .action(async (name) => {
      const { body } = await readNetwork(ctx, name);
      const { renderYaml } = await import("./yaml.ts");
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(body)));
    });

  network.command("create")
    .description(
      "Create a bridge: NAME [key=value...] (ipv4.address=auto picks a free /24; see docs/networks.md)",
    )
    .argument("<name>", "Network name (the bridge's interface name)")
    .argument("[key=value...]", "Config keys")
    .option("-d, --description <text>", "Network description")
    .option("-t, --type <type>", "Network type (only bridge)", "bridge")
    .action(async (name, pairs, opts) => {
      await ctx.client.run("POST", "/1.0/networks", {
        body: {
          name,
          type: opts.type,
          description: opts.description ?? "",
          config: parseKeyValues(pairs),
        },
      });
      console.log(`Network ${name} created`);
    });

  network.command("get")
    .description("Print one config key of a network")
    .argument("<name>", "Network name")
    .argument("<key>", "Config key")
    .action(async (name, key) => {
      console.log((await readNetwork(ctx, name)).body.config[key] ?? "");
    });

  network.command("set")
    .description("Set config keys of a network: NAME key=value... (or NAME key value)")
    .argument("<name>", "Network name")
    .argument("<args...>", "key=value... or key value")
    .action(async (name, args) => {
      const { body, etag } = await readNetwork(ctx, name);
      await writeNetwork(
        ctx,
        name,
        { ...body, config: { ...body.config, ...setArgs(args) } },
        etag,
      );
    });

  network.command("unset")
    .description("Remove a config key of a network")
    .argument("<name>", "Network name")
    .argument("<key>", "Config key")
    .action(async (name, key) => {
      const { body, etag } = await readNetwork(ctx, name);
      if (!(key in body.config)) {
        throw new UsageError(`Config key "${key}" is not set on network "${name}"`);
      }
      delete body.config[key];
      await writeNetwork(ctx, name, body, etag);
    });

  network.command("delete")
    .alias("rm")
    .description("Delete networks no instance or profile uses (bridge, rules and dnsmasq go)")
    .argument("<names...>", "Network names")
    .action(async (names) => {
      for (const name of names) {
        await ctx.client.run("DELETE", networkUrl(name));
        console.log(`Network ${name} deleted`);
      }
    });

  network.command("rename")
    .description("Rename a network no instance or profile uses (its bridge too)")
    .argument("<name>", "Network name")
    .argument("<new-name>", "New name")
    .action(async (name, to) => {
      await ctx.client.run("POST", networkUrl(name), { body: { name: to } });
      console.log(`Network ${name} renamed to ${to}`);
    });

  network.command("list-leases")
    .description("List a network's DHCP leases and fixed addresses")
    .argument("<name>", "Network name")
    .option(...FORMAT_OPTION)
    .action(async (name, opts) => {
      const format = parseFormat(opts.format);
      const leases = await ctx.client.get<NetworkLease[]>(`${networkUrl(name)}/leases`);
      await printList(format, leases, LEASE_COLUMNS);
    });
  return network;
}
