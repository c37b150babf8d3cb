/**
 * `outpost config trust ...` (and `outpost trust ...`): the trust store of the daemon the command
 * runs on, as `lxc config trust` shows it: trusted certificates and the pending trust tokens
 * (running operations of class `token`) that let a client add itself.
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Certificate, Operation } from "../contract/responses.ts";
import { encodeToken, NEVER } from "../contract/trust_token.ts";
import { operationUrl } from "../contract/urls.ts";
import { type CliContext, UsageError } from "./context.ts";
import { type Column, FORMAT_OPTION, parseFormat, printList } from "./format.ts";

/** What a token operation's metadata holds. */
interface TokenMetadata {
  secret: string;
  fingerprint: string;
  addresses: string[];
  request: { name: string };
  expiresAt?: string;
}

interface PendingToken {
  id: string;
  name: string;
  token: string;
  expiresAt: string;
}

const CERT_COLUMNS: Column<Certificate>[] = [
  { header: "NAME", value: (c) => c.name },
  { header: "TYPE", value: (c) => c.type },
  { header: "FINGERPRINT", value: (c) => c.fingerprint.slice(0, 12) },
  { header: "RESTRICTED", value: (c) => (c.restricted ? "YES" : "NO") },
  { header: "PROJECTS", value: (c) => c.projects.join("\n") },
];

const TOKEN_COLUMNS: Column<PendingToken>[] = [
  { header: "NAME", value: (t) => t.name },
  { header: "TOKEN", value: (t) => t.token },
  { header: "EXPIRES AT", value: (t) => t.expiresAt },
];

/** The token text a token operation stands for, as the clients print it. */
function tokenOf(op: Operation): PendingToken {
  const m = op.metadata as unknown as TokenMetadata;
  const expires = m.expiresAt ?? NEVER;
  return {
    id: op.id,
    name: m.request.name,
    token: encodeToken({
      client_name: m.request.name,
      fingerprint: m.fingerprint,
      addresses: m.addresses,
      secret: m.secret,
      expires_at: expires,
    }),
    expiresAt: expires === NEVER || expires.startsWith("0001-") ? "" : expires,
  };
}

async function pendingTokens(ctx: CliContext): Promise<PendingToken[]> {
  const ops = await ctx.client.get<Record<string, Operation[]>>("/1.0/operations?recursion=1");
  return Object.values(ops).flat()
    .filter((op) => op.class === "token" && op.status_code === 103)
    .map(tokenOf);
}

/** The type, restriction and projects a certificate is trusted with, from the options. */
function access(opts: { type: string; restricted?: boolean; projects: string }) {
  if (!["client", "metrics"].includes(opts.type)) {
    throw new UsageError(`Unknown certificate type "${opts.type}": use client or metrics`);
  }
  return {
    type: opts.type,
    restricted: opts.restricted ?? false,
    projects: opts.projects.split(",").filter((p) => p !== ""),
  };
}

export function trustCommand(ctx: CliContext, name = "trust"): CommandUnknownOpts {
  const trust = new Command(name).description(
    "Manage the clients the daemon trusts: certificates and trust tokens",
  );

  trust.command("add")
    .description('Issue a trust token for a client NAME and print it (give it to "remote add")')
    .argument("<name>", "Name of the client the token is for")
    .option("--restricted", "Restrict the client to --projects")
    .option("--projects <list>", "Comma-separated projects a restricted client may use", "")
    .option("--type <type>", "Certificate type: client or metrics", "client")
    .action(async (client, opts) => {
      const op = await ctx.client.start("POST", "/1.0/certificates", {
        body: { token: true, name: client, ...access(opts) },
      });
      console.log(`Client ${client} certificate add token:\n${tokenOf(op).token}`);
    });

  trust.command("add-certificate")
    .description("Trust a client certificate from a PEM file (a client's own, or one for metrics)")
    .argument("<file>", "The certificate, PEM")
    .option("--name <name>", "Name for it (default: its common name)", "")
    .option("--restricted", "Restrict the client to --projects")
    .option("--projects <list>", "Comma-separated projects a restricted client may use", "")
    .option("--type <type>", "Certificate type: client or metrics", "client")
    .action(async (file, opts) => {
      const fields = access(opts);
      let pem: string;
      try {
        pem = await Deno.readTextFile(file);
      } catch (err) {
        throw new UsageError(
          `Cannot read certificate file "${file}": ${err instanceof Error ? err.message : err}`,
        );
      }
      await ctx.client.run("POST", "/1.0/certificates", {
        body: { certificate: pem, name: opts.name, ...fields },
      });
    });

  trust.command("list")
    .alias("ls")
    .description("List the trusted certificates")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const certs = await ctx.client.get<Certificate[]>("/1.0/certificates?recursion=1");
      await printList(format, certs, CERT_COLUMNS, certs);
    });

  trust.command("remove")
    .alias("rm")
    .description("Stop trusting a certificate (a unique fingerprint prefix will do)")
    .argument("<fingerprint>", "Fingerprint of the certificate")
    .action(async (prefix) => {
      const certs = await ctx.client.get<Certificate[]>("/1.0/certificates?recursion=1");
      const matches = certs.filter((c) => c.fingerprint.startsWith(prefix.toLowerCase()));
      if (matches.length !== 1 || prefix === "") {
        throw new UsageError(
          matches.length === 0
            ? `No trusted certificate has fingerprint "${prefix}": see "outpost config trust list"`
            : `Fingerprint "${prefix}" matches ${matches.length} certificates: give more of it`,
        );
      }
      await ctx.client.run("DELETE", `/1.0/certificates/${matches[0].fingerprint}`);
    });

  trust.command("list-tokens")
    .description("List the trust tokens not yet used")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const tokens = await pendingTokens(ctx);
      await printList(format, tokens, TOKEN_COLUMNS);
    });

  trust.command("revoke-token")
    .description("Revoke the trust token issued for a client NAME")
    .argument("<name>", "Name of the client the token is for")
    .action(async (client) => {
      const found = (await pendingTokens(ctx)).filter((t) => t.name === client);
      if (found.length === 0) {
        throw new UsageError(
          `No trust token for "${client}": see "outpost config trust list-tokens"`,
        );
      }
      for (const t of found) await ctx.client.request("DELETE", operationUrl(t.id));
    });

  return trust;
}
