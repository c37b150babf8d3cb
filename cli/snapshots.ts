/** `outpost snapshot create/list/show/restore/rename/delete`: instance snapshots. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { InstanceSnapshot } from "../contract/responses.ts";
import { instanceUrl, snapshotUrl } from "../contract/urls.ts";
import type { CliContext } from "./context.ts";
import { type Column, parseFormat, renderList } from "./format.ts";
import { renderYaml } from "./yaml.ts";

/** Go's zero time, which the API uses for "never". */
const NEVER = "0001-01-01T00:00:00Z";

/** A time as Incus's CLI prints it ("2024/05/01 13:45 UTC"); empty for "never". */
export function formatTime(iso: string): string {
  const t = Date.parse(iso);
  if (iso === NEVER || Number.isNaN(t) || t <= Date.parse(NEVER)) return "";
  const d = new Date(t).toISOString();
  return `${d.slice(0, 10).replaceAll("-", "/")} ${d.slice(11, 16)} UTC`;
}

const COLUMNS: Column<InstanceSnapshot>[] = [
  { header: "NAME", value: (s) => s.name },
  { header: "TAKEN AT", value: (s) => formatTime(s.created_at) },
  { header: "EXPIRES AT", value: (s) => formatTime(s.expires_at) },
  { header: "STATEFUL", value: (s) => (s.stateful ? "YES" : "NO") },
];

export function snapshotCommand(ctx: CliContext): CommandUnknownOpts {
  const snapshot = new Command("snapshot").description("Manage instance snapshots");

  snapshot.command("create")
    .description(
      "Snapshot an instance (a running container is paused while it is copied; a VM is snapshotted live)",
    )
    .argument("<name>", "Instance name")
    .argument("[snapshot]", "Snapshot name (default: the next free snapN)")
    .option(
      "--expires-at <time>",
      "When the snapshot is deleted (RFC 3339, e.g. 2030-01-01T00:00:00Z)",
    )
    .action(async (name, snap, opts) => {
      await ctx.client.run("POST", `${instanceUrl(name)}/snapshots`, {
        body: { name: snap ?? "", stateful: false, expires_at: opts.expiresAt ?? null },
      });
    });

  snapshot.command("list")
    .alias("ls")
    .description("List an instance's snapshots")
    .argument("<name>", "Instance name")
    .option("-f, --format <format>", "Output format: table, json, yaml, csv, compact", "table")
    .action(async (name, opts) => {
      const format = parseFormat(opts.format);
      const all = await ctx.client.get<InstanceSnapshot[]>(
        `${instanceUrl(name)}/snapshots?recursion=1`,
      );
      Deno.stdout.writeSync(new TextEncoder().encode(await renderList(format, all, COLUMNS, all)));
    });

  snapshot.command("show")
    .description("Show a snapshot's details (YAML)")
    .argument("<name>", "Instance name")
    .argument("<snapshot>", "Snapshot name")
    .action(async (name, snap) => {
      const s = await ctx.client.get<InstanceSnapshot>(snapshotUrl(name, snap));
      Deno.stdout.writeSync(new TextEncoder().encode(renderYaml(s)));
    });

  snapshot.command("restore")
    .description("Restore an instance from a snapshot (a running one is restarted)")
    .argument("<name>", "Instance name")
    .argument("<snapshot>", "Snapshot name")
    .action(async (name, snap) => {
      await ctx.client.run("PUT", instanceUrl(name), { body: { restore: snap, stateful: false } });
    });

  snapshot.command("rename")
    .description("Rename a snapshot")
    .argument("<name>", "Instance name")
    .argument("<old>", "Current snapshot name")
    .argument("<new>", "New snapshot name")
    .action(async (name, from, to) => {
      await ctx.client.run("POST", snapshotUrl(name, from), { body: { name: to } });
    });

  snapshot.command("delete")
    .alias("rm")
    .description("Delete snapshots")
    .argument("<name>", "Instance name")
    .argument("<snapshots...>", "Snapshot names")
    .action(async (name, snaps) => {
      for (const snap of snaps) await ctx.client.run("DELETE", snapshotUrl(name, snap));
    });

  return snapshot;
}
