/**
 * `outpost hub`: run the fleet hub, and manage its join tokens (`outpost hub token ...`) through
 * its admin socket (`--state-dir`, env OUTPOST_HUB_DIR, default /var/lib/outpost-hub).
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { CreatedToken, Token } from "../contract/fleet.ts";
import { FLEET_API } from "../contract/urls.ts";
import { type CliContext, UsageError } from "./context.ts";
import { type Column, FORMAT_OPTION, parseFormat, printList } from "./format.ts";

export interface HubRunOptions {
  stateDir: string;
  listen: string;
  urls: string[];
  heartbeatSeconds: number;
  database?: string;
}

const TOKEN_COLUMNS: Column<Token>[] = [
  { header: "ID", value: (t) => t.id },
  { header: "DESCRIPTION", value: (t) => t.description },
  {
    header: "LABELS",
    value: (t) => Object.entries(t.labels).map(([k, v]) => `${k}=${v}`).join("\n"),
  },
  { header: "USES LEFT", value: (t) => String(t.uses_left) },
  { header: "EXPIRES AT", value: (t) => t.expires_at || "never" },
];

export const collect = (value: string, previous: string[]) => [...previous, value];

/** The `--label` option of the fleet commands that select hosts: flags, help, parser, default. */
export const LABEL_OPTION = [
  "--label <key=value>",
  "Only hosts with this label (repeatable)",
  collect,
  [] as string[],
] as const;

/** `k=v` words as labels (the hub checks them again). */
export function labelsOf(words: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of words) {
    const i = w.indexOf("=");
    if (i <= 0) throw new UsageError(`Invalid label "${w}": use KEY=VALUE`);
    out[w.slice(0, i)] = w.slice(i + 1);
  }
  return out;
}

export function hubCommand(
  ctx: CliContext,
  run: (opts: HubRunOptions) => Promise<void>,
): CommandUnknownOpts {
  const hub = new Command("hub")
    .description(
      "Run the fleet hub in the foreground (hosts enroll with its join tokens), or manage it",
    )
    .option("--listen <address>", "Where to serve HTTPS", "[::]:8443")
    .option(
      "--url <url>",
      "A URL hosts reach the hub at, for join tokens (repeatable; default: the listen address)",
      collect,
      [] as string[],
    )
    .option("--heartbeat <seconds>", "How often hosts send a heartbeat", "10")
    .option(
      "--database <url>",
      "A PostgreSQL database several hubs share (postgres://USER:PASS@HOST/DB); default: SQLite in the state dir",
    )
    .action(async (opts) => {
      const heartbeatSeconds = Number(opts.heartbeat);
      if (!(heartbeatSeconds > 0 && heartbeatSeconds <= 3600)) {
        throw new UsageError(`Invalid --heartbeat "${opts.heartbeat}": use 1 to 3600 seconds`);
      }
      if (opts.database !== undefined && !/^postgres(ql)?:\/\//.test(opts.database)) {
        throw new UsageError(`Invalid --database "${opts.database}": use postgres://...`);
      }
      await run({
        stateDir: ctx.hubDir,
        listen: opts.listen,
        urls: opts.url,
        heartbeatSeconds,
        database: opts.database,
      });
    });

  const token = hub.command("token").description("Manage join tokens");
  token.command("create")
    .description("Create a join token and print it with the one-line install command")
    .option("--expires <duration>", 'How long it is valid (30m, 1h, 7d; "never")', "1h")
    .option("--uses <n>", "How many hosts may join with it", "1")
    .option("--label <key=value>", "A label the hosts get (repeatable)", collect, [] as string[])
    .option("--description <text>", "What the token is for", "")
    .action(async (opts) => {
      const uses = Number(opts.uses);
      if (!Number.isInteger(uses) || uses < 1) {
        throw new UsageError(`Invalid --uses "${opts.uses}": use a whole number from 1`);
      }
      const env = await ctx.hubClient.request<CreatedToken>("POST", `${FLEET_API}/tokens`, {
        body: {
          expires: opts.expires,
          uses,
          labels: labelsOf(opts.label),
          description: opts.description,
        },
      });
      const t = env.metadata as CreatedToken;
      console.log(
        `Join token (${t.uses_left} use${t.uses_left === 1 ? "" : "s"}, expires ${
          t.expires_at || "never"
        }):`,
      );
      console.log(t.token);
      console.log("\nOn a fresh host, as root:");
      console.log(t.install_command);
      console.log("\nOn a host that runs outpost:");
      console.log(`outpost enroll --token ${t.token}`);
    });
  token.command("list")
    .alias("ls")
    .description("List the join tokens still usable")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const tokens = await ctx.hubClient.get<Token[]>(`${FLEET_API}/tokens`);
      await printList(format, tokens, TOKEN_COLUMNS, tokens);
    });
  token.command("revoke")
    .description("Revoke a join token")
    .argument("<id>", 'The token\'s ID (see "outpost hub token list")')
    .action(async (id) => {
      await ctx.hubClient.request("DELETE", `${FLEET_API}/tokens/${encodeURIComponent(id)}`);
    });
  hub.command("dashboard")
    .description("Print a one-time link that logs a browser in to the hub's dashboard (10 minutes)")
    .action(async () => {
      const env = await ctx.hubClient.request<{ url: string }>("POST", `${FLEET_API}/dashboard`);
      const m = env.metadata as { url: string; expires_at: string };
      console.log(`Open this link (valid until ${m.expires_at}, once):\n${m.url}`);
    });

  const trust = hub.command("trust").description(
    "Manage the hub's remote administrators (client certificates added with a trust token)",
  );
  trust.command("add")
    .description('Issue a trust token for a client NAME (it runs "outpost remote add NAME TOKEN")')
    .argument("<name>", "Name of the client")
    .option("--expires <duration>", 'How long the token is valid (30m, 1h, 7d; "never")', "1d")
    .action(async (name, opts) => {
      const env = await ctx.hubClient.request<{ token: string }>("POST", `${FLEET_API}/clients`, {
        body: { name, expires: opts.expires },
      });
      console.log(
        `Client ${name} certificate add token:\n${(env.metadata as { token: string }).token}`,
      );
    });
  trust.command("list")
    .alias("ls")
    .description("List the trusted clients and the tokens not yet used")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const { clients, tokens } = await ctx.hubClient.get<AdminList>(`${FLEET_API}/clients`);
      const rows = [
        ...clients.map((c) => ({
          name: c.name,
          id: c.fingerprint.slice(0, 12),
          kind: "client",
          expires: "",
        })),
        ...tokens.map((t) => ({
          name: t.name,
          id: t.id,
          kind: "token",
          expires: t.expires_at || "never",
        })),
      ];
      await printList(format, rows, TRUST_COLUMNS, { clients, tokens });
    });
  trust.command("remove")
    .alias("rm")
    .description("Stop trusting a client (a fingerprint prefix) or revoke a token (its ID)")
    .argument("<id>", "Fingerprint prefix or token ID")
    .action(async (id) => {
      await ctx.hubClient.request("DELETE", `${FLEET_API}/clients/${encodeURIComponent(id)}`);
    });
  return hub;
}

interface AdminList {
  clients: { name: string; fingerprint: string; created_at: string }[];
  tokens: { id: string; name: string; expires_at: string }[];
}

interface TrustRow {
  name: string;
  id: string;
  kind: string;
  expires: string;
}

const TRUST_COLUMNS: Column<TrustRow>[] = [
  { header: "NAME", value: (r) => r.name },
  { header: "KIND", value: (r) => r.kind },
  { header: "ID", value: (r) => r.id },
  { header: "EXPIRES AT", value: (r) => r.expires },
];
