/**
 * `outpost enroll` (this host joins a hub) and `outpost fleet ...` (the hub's view of its hosts,
 * through the hub's admin socket).
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { FleetHost, FleetMembership } from "../contract/fleet.ts";
import { FLEET_API } from "../contract/urls.ts";
import { ApiClient } from "../contract/client.ts";
import type { Operation } from "../contract/responses.ts";
import { type CliContext, UsageError } from "./context.ts";
import { type Column, FORMAT_OPTION, formatBytes, parseFormat, printList } from "./format.ts";
import { LABEL_OPTION, labelsOf } from "./hub.ts";

/** Commands `fleet exec` runs at once. */
const FAN_OUT = 16;

const labelText = (labels: Record<string, string>) =>
  Object.entries(labels).map(([k, v]) => `${k}=${v}`).join("\n");

const HOST_COLUMNS: Column<FleetHost>[] = [
  { header: "NAME", value: (h) => h.name },
  { header: "STATUS", value: (h) => h.status.toUpperCase() },
  { header: "LAST SEEN", value: (h) => h.last_seen },
  { header: "VERSION", value: (h) => h.inventory?.version ?? "" },
  { header: "LABELS", value: (h) => labelText(h.labels) },
  { header: "CPUS", value: (h) => String(h.inventory?.cpus ?? "") },
  { header: "MEMORY", value: (h) => h.inventory ? formatBytes(h.inventory.memory_bytes) : "" },
  { header: "INSTANCES", value: (h) => String(h.inventory?.instances.length ?? "") },
];

interface FleetInstance {
  host: string;
  name: string;
  type: string;
  status: string;
  addresses: string[];
}

const INSTANCE_COLUMNS: Column<FleetInstance>[] = [
  { header: "HOST", value: (i) => i.host },
  { header: "NAME", value: (i) => i.name },
  { header: "TYPE", value: (i) => i.type },
  { header: "STATE", value: (i) => i.status.toUpperCase() },
  { header: "ADDRESSES", value: (i) => i.addresses.join("\n") },
];

function hostsPath(labels: string[]): string {
  const selector = labelsOf(labels);
  const q = Object.entries(selector).map(([k, v]) => `label=${encodeURIComponent(`${k}=${v}`)}`);
  return `${FLEET_API}/hosts${q.length ? `?${q.join("&")}` : ""}`;
}

export function enrollCommand(ctx: CliContext): CommandUnknownOpts {
  return new Command("enroll")
    .description("Enroll this host with a fleet hub (the daemon keeps a tunnel open to it)")
    .argument("[url]", "The hub's URL as this host reaches it (default: the token's)")
    .requiredOption("--token <token>", 'A join token from "outpost hub token create"')
    .option("--name <name>", "This host's name in the fleet (default: its host name)")
    .action(async (url, opts) => {
      if (url !== undefined && !/^https:\/\/[^/]+\/?$/.test(url)) {
        throw new UsageError(`Invalid hub URL "${url}": use https://HOST[:PORT]`);
      }
      const env = await ctx.client.request<FleetMembership>("POST", "/1.0/fleet", {
        body: {
          token: opts.token,
          ...(url ? { url } : {}),
          ...(opts.name ? { name: opts.name } : {}),
        },
      });
      const m = env.metadata as FleetMembership;
      console.log(`Enrolled as "${m.name}" with the hub at ${m.hub[0]}`);
    });
}

export function fleetCommand(ctx: CliContext): CommandUnknownOpts {
  const fleet = new Command("fleet").description(
    "The fleet as the hub on this machine sees it (its state dir: --state-dir, env OUTPOST_HUB_DIR)",
  );
  fleet.command("hosts")
    .description("List the enrolled hosts, online or not")
    .option(...LABEL_OPTION)
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const hosts = await ctx.hubClient.get<FleetHost[]>(hostsPath(opts.label));
      await printList(format, hosts, HOST_COLUMNS, hosts);
    });
  fleet.command("show")
    .description("Show one host: its status, labels and last inventory (JSON)")
    .argument("<host>", "The host's name")
    .action(async (name) => {
      const host = await ctx.hubClient.get<FleetHost>(
        `${FLEET_API}/hosts/${encodeURIComponent(name)}`,
      );
      console.log(JSON.stringify(host, null, 2));
    });
  fleet.command("remove")
    .description("Remove a host from the fleet (it must enroll again to come back)")
    .argument("<host>", "The host's name")
    .action(async (name) => {
      await ctx.hubClient.request("DELETE", `${FLEET_API}/hosts/${encodeURIComponent(name)}`);
    });
  fleet.command("instances")
    .description("List the instances of every host, as each last reported them")
    .option(...LABEL_OPTION)
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const hosts = await ctx.hubClient.get<FleetHost[]>(hostsPath(opts.label));
      const rows = hosts.flatMap((h) =>
        (h.inventory?.instances ?? []).map((i) => ({ host: h.name, ...i }))
      );
      await printList(format, rows, INSTANCE_COLUMNS, rows);
    });
  fleet.command("upgrade")
    .description(
      "Upgrade hosts to the hub's agent program (installed hosts only; instances keep running) " +
        "and wait for each to report the new build or its rollback",
    )
    .option(...LABEL_OPTION)
    .option("--wait <seconds>", "How long to wait for the hosts to come back", "600")
    .action(async (opts) => {
      const wait = Number(opts.wait);
      if (!(wait >= 0)) throw new UsageError(`Invalid --wait "${opts.wait}": use seconds`);
      const env = await ctx.hubClient.request<UpgradeAnswer>("POST", `${FLEET_API}/upgrade`, {
        body: { labels: labelsOf(opts.label) },
      });
      const answer = env.metadata as UpgradeAnswer;
      const short = answer.sha256.slice(0, 12);
      console.log(`Agent program ${answer.version} (${short}):`);
      for (const h of answer.hosts) console.log(`  ${h.host}: ${h.status} ${h.message}`.trimEnd());
      const pending = new Set(
        answer.hosts.filter((h) => h.status === "started").map((h) => h.host),
      );
      let failed = answer.hosts.filter((h) => h.status === "failed").length;
      const deadline = Date.now() + wait * 1000;
      while (pending.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        for (const h of await ctx.hubClient.get<FleetHost[]>(`${FLEET_API}/hosts`)) {
          if (!pending.has(h.name) || h.status !== "online" || !h.inventory) continue;
          const last = h.inventory.last_upgrade;
          if (h.inventory.build === answer.sha256) {
            console.log(`  ${h.name}: upgraded to ${short}`);
            pending.delete(h.name);
          } else if (last?.to === answer.sha256 && last.result === "rolled-back") {
            console.log(`  ${h.name}: rolled back: ${last.message}`);
            pending.delete(h.name);
            failed++;
          }
        }
      }
      for (const name of pending) console.log(`  ${name}: no answer in ${wait} s`);
      if (failed > 0 || pending.size > 0) ctx.exitCode = 1;
    });

  fleet.command("exec")
    .description(
      "Run a command in instances of many hosts at once (--label selects hosts, --instance the " +
        "instance; every running one without it) and print each result",
    )
    .option(...LABEL_OPTION)
    .option("--instance <name>", "The instance to run in on each host")
    .argument("<command...>", "The command (after --)")
    .action(async (command, opts) => {
      const hosts = (await ctx.hubClient.get<FleetHost[]>(hostsPath(opts.label)))
        .filter((h) => h.status === "online");
      if (hosts.length === 0) throw new UsageError("No online host matches");
      const jobs = hosts.flatMap((h) =>
        (h.inventory?.instances ?? [])
          .filter((i) => opts.instance ? i.name === opts.instance : i.status === "Running")
          .map((i) => ({ host: h.name, instance: i.name }))
      );
      if (opts.instance) {
        for (const h of hosts) {
          if (!jobs.some((j) => j.host === h.name)) {
            jobs.push({ host: h.name, instance: opts.instance });
          }
        }
      }
      // At most FAN_OUT commands at once, so a large fleet is not asked everything at one time.
      const results: ExecResult[] = [];
      const queue = [...jobs];
      await Promise.all(Array.from({ length: Math.min(FAN_OUT, queue.length) }, async () => {
        for (let j = queue.shift(); j; j = queue.shift()) {
          results.push(await execOn(ctx, j.host, j.instance, command));
        }
      }));
      let failed = 0;
      for (
        const r of results.sort((a, b) =>
          `${a.host}/${a.instance}`.localeCompare(`${b.host}/${b.instance}`)
        )
      ) {
        const ok = r.error === undefined && r.code === 0;
        if (!ok) failed++;
        const status = r.error !== undefined ? `error: ${r.error}` : `exit ${r.code}`;
        console.log(`== ${r.host}/${r.instance}: ${status}`);
        if (r.stdout) {
          Deno.stdout.writeSync(
            new TextEncoder().encode(r.stdout.endsWith("\n") ? r.stdout : `${r.stdout}\n`),
          );
        }
        if (r.stderr) {
          Deno.stderr.writeSync(
            new TextEncoder().encode(r.stderr.endsWith("\n") ? r.stderr : `${r.stderr}\n`),
          );
        }
      }
      console.log(`${results.length - failed} of ${results.length} succeeded`);
      if (failed > 0) ctx.exitCode = 1;
    });
  return fleet;
}

interface UpgradeAnswer {
  version: string;
  sha256: string;
  hosts: { host: string; status: string; message: string }[];
}

interface ExecResult {
  host: string;
  instance: string;
  code?: number;
  stdout?: string;
  stderr?: string;
  error?: string;
}

/** Runs a command in one instance of one host through the hub, its output recorded. */
async function execOn(
  ctx: CliContext,
  host: string,
  instance: string,
  command: string[],
): Promise<ExecResult> {
  // The hub's own transport (its socket, or a hub remote), with the host's paths.
  const client = new ApiClient(ctx.hubClient.transport, {
    basePath: `${FLEET_API}/hosts/${encodeURIComponent(host)}`,
  });
  try {
    const op = await client.run("POST", `/1.0/instances/${encodeURIComponent(instance)}/exec`, {
      body: { command, "record-output": true, "wait-for-websocket": false, interactive: false },
    }) as Operation;
    const meta = op.metadata as { return?: number; output?: Record<string, string> };
    const read = async (fd: string) => {
      const path = meta.output?.[fd];
      if (!path) return "";
      const resp = await client.fetch("GET", path);
      return resp.ok ? await resp.text() : "";
    };
    return {
      host,
      instance,
      code: Number(meta.return),
      stdout: await read("1"),
      stderr: await read("2"),
    };
  } catch (err) {
    return { host, instance, error: err instanceof Error ? err.message : String(err) };
  }
}
