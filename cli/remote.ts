/**
 * `outpost remote ...`: the daemons this CLI drives. `local` is the daemon's unix socket; others
 * are HTTPS remotes added with a trust token, as `lxc remote add` does: the CLI makes its client
 * certificate if it has none, reaches the server at an address of the token (or the URL given),
 * requires its certificate to be the one the token names, pins it and redeems the token with
 * its own certificate. `REMOTE:` in any other command's words runs that command there.
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { ApiClient } from "../contract/client.ts";
import {
  clientCertFile,
  type ClientConfig,
  clientKeyFile,
  LOCAL_REMOTE,
  REMOTE_NAME,
  serverCertFile,
  writeConfig,
} from "../contract/remote_config.ts";
import { socketPath } from "../contract/state_dir.ts";
import { decodeToken, tokenExpired, type TrustToken } from "../contract/trust_token.ts";
import { type CliContext, UsageError } from "./context.ts";
import { type Column, FORMAT_OPTION, parseFormat, printList } from "./format.ts";

/** The `openssl` argv making the CLI's client certificate: self-signed ECDSA P-384, ten years. */
export function clientCertArgv(commonName: string, keyOut: string, certOut: string): string[] {
  const selfSignedP384 = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -sha384 -nodes";
  return [
    ...selfSignedP384.split(" "),
    ...["-days", "3650", "-subj", `/O=outpost/CN=${commonName}`],
    ...["-addext", "extendedKeyUsage=clientAuth", "-keyout", keyOut, "-out", certOut],
  ];
}

/** Makes `client.crt` and `client.key` (0600) in `dir` unless both are there. */
export async function ensureClientCert(dir: string): Promise<void> {
  const present = (file: string) => Deno.stat(file).then(() => true, () => false);
  if (await present(clientCertFile(dir)) && await present(clientKeyFile(dir))) return;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = await Deno.makeTempDir({ dir, prefix: ".client-cert-" });
  try {
    const user = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(Deno.env.get("USER") ?? "")
      ? Deno.env.get("USER")
      : "root";
    const host = Deno.hostname().replace(/[^A-Za-z0-9.-]/g, "") || "localhost";
    const key = `${tmp}/client.key`;
    const cert = `${tmp}/client.crt`;
    const out = await new Deno.Command("openssl", {
      args: clientCertArgv(`${user}@${host}`, key, cert),
      stdout: "null",
      stderr: "piped",
    }).output().catch((err) => {
      throw new UsageError(`Cannot run openssl to make the client certificate: ${err.message}`);
    });
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
      throw new UsageError(`openssl could not make the client certificate: ${why}`);
    }
    await Deno.chmod(key, 0o600);
    await Deno.rename(key, clientKeyFile(dir));
    await Deno.rename(cert, clientCertFile(dir));
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** `https://HOST:PORT` from a URL or `HOST[:PORT]` (port 8443 when none is given). */
export function remoteUrl(target: string): string {
  const withScheme = target.includes("://") ? target : `https://${target}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`Invalid remote address "${target}": expected https://HOST:PORT`);
  }
  if (url.protocol !== "https:" || url.hostname === "" || (url.pathname !== "/" && url.pathname)) {
    throw new UsageError(`Invalid remote address "${target}": expected https://HOST:PORT`);
  }
  return `https://${url.hostname}:${url.port || "8443"}`;
}

/** Whether `remote add`'s second word is an address (a token is base64: no `:` and no `.`). */
function isAddress(target: string): boolean {
  return /[:./]/.test(target) || target === "localhost";
}

function checkNewName(cfg: ClientConfig, name: string): void {
  if (!REMOTE_NAME.test(name)) {
    throw new UsageError(
      `Invalid remote name "${name}": use letters, digits, "_", "." and "-"`,
    );
  }
  if (name === LOCAL_REMOTE) throw new UsageError(`Remote "local" is built in: pick another name`);
  if (Object.hasOwn(cfg.remotes, name)) {
    throw new UsageError(`Remote "${name}" exists: pick another name or remove it first`);
  }
}

function checkExisting(cfg: ClientConfig, name: string, verb: string): void {
  if (name === LOCAL_REMOTE) {
    throw new UsageError(`Remote "local" is built in: it cannot be ${verb}`);
  }
  if (!Object.hasOwn(cfg.remotes, name)) {
    throw new UsageError(`No remote "${name}": see "outpost remote list"`);
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reaches the token's server at one of `addresses`; answers the address and its certificate. */
async function reachServer(
  token: TrustToken,
  addresses: string[],
): Promise<{ url: string; certificate: string }> {
  const { probeServerCert } = await import("../contract/tls_transport.ts");
  const failures: string[] = [];
  for (const url of addresses) {
    let probe;
    try {
      probe = await probeServerCert(url);
    } catch (err) {
      failures.push(messageOf(err));
      continue;
    }
    if (probe.fingerprint !== token.fingerprint) {
      throw new UsageError(
        `The server at ${url} has certificate fingerprint ${probe.fingerprint}, not the token's ${token.fingerprint}: the token is for another server`,
      );
    }
    return { url, certificate: probe.certificate };
  }
  throw new UsageError(failures.join("; "));
}

/** The client for a remote whose server certificate is `certificate`, with this user's key pair. */
async function remoteClient(
  dir: string,
  name: string,
  url: string,
  certificate: string,
): Promise<ApiClient> {
  const { TlsTransport } = await import("../contract/tls_transport.ts");
  return new ApiClient(
    new TlsTransport({
      name,
      url,
      cert: await Deno.readTextFile(clientCertFile(dir)),
      key: await Deno.readTextFile(clientKeyFile(dir)),
      serverCert: certificate,
    }),
  );
}

/**
 * Adds a remote by address without a token: the server's certificate is pinned as first seen
 * (its fingerprint printed), and the server must already trust this client's certificate
 * (`outpost remote get-client-certificate` prints it for the server's admin).
 */
async function addTrustedRemote(ctx: CliContext, name: string, target: string): Promise<void> {
  const cfg = ctx.config;
  const dir = ctx.confDir;
  const url = remoteUrl(target);
  const { probeServerCert } = await import("../contract/tls_transport.ts");
  let server;
  try {
    server = await probeServerCert(url);
  } catch (err) {
    throw new UsageError(messageOf(err));
  }
  console.error(`Certificate fingerprint: ${server.fingerprint}`);
  await ensureClientCert(dir);
  const client = await remoteClient(dir, name, url, server.certificate);
  let hub = false;
  try {
    const info = await client.get<{ auth: string; environment?: { server?: string } }>("/1.0");
    hub = info.environment?.server === "outpost-hub";
    if (info.auth !== "trusted") {
      throw new UsageError(
        `The server at ${url} does not trust this client yet: give it "outpost remote get-client-certificate" to trust, or add the remote with a token (--token)`,
      );
    }
  } catch (err) {
    throw err instanceof UsageError ? err : new UsageError(messageOf(err));
  } finally {
    client.close();
  }
  await Deno.mkdir(`${dir}/servercerts`, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(serverCertFile(dir, name), server.certificate);
  cfg.remotes[name] = hub ? { addr: url, protocol: "outpost-hub" } : { addr: url };
  await writeConfig(dir, cfg);
}

async function addRemote(
  ctx: CliContext,
  name: string,
  target: string,
  tokenOption?: string,
  acceptCertificate = false,
): Promise<void> {
  const cfg = ctx.config;
  checkNewName(cfg, name);
  const byUrl = isAddress(target);
  const text = byUrl ? tokenOption : target;
  if (byUrl && text === undefined && acceptCertificate) {
    return await addTrustedRemote(ctx, name, target);
  }
  if (text === undefined) {
    throw new UsageError(
      `Adding a remote by address needs a trust token: outpost remote add ${name} ${target} --token TOKEN (make one with "outpost config trust add NAME" on the server), or --accept-certificate when the server already trusts this client`,
    );
  }
  if (!byUrl && tokenOption !== undefined) {
    throw new UsageError("Give the token once: outpost remote add NAME [https://HOST:PORT] TOKEN");
  }
  let token: TrustToken;
  try {
    token = decodeToken(text);
  } catch (err) {
    throw new UsageError(messageOf(err));
  }
  if (tokenExpired(token)) {
    throw new UsageError(`The trust token expired at ${token.expires_at}: ask for a new one`);
  }
  const addresses = byUrl ? [remoteUrl(target)] : token.addresses.map(remoteUrl);
  if (addresses.length === 0) {
    throw new UsageError(
      `The token lists no address: outpost remote add ${name} https://HOST:PORT --token TOKEN`,
    );
  }
  const dir = ctx.confDir;
  const server = await reachServer(token, addresses);
  await ensureClientCert(dir);
  const pinned = serverCertFile(dir, name);
  await Deno.mkdir(`${dir}/servercerts`, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(pinned, server.certificate);
  const client = await remoteClient(dir, name, server.url, server.certificate);
  let hub = false;
  try {
    await client.request("POST", "/1.0/certificates", {
      body: { type: "client", trust_token: text.trim() },
    });
    const info = await client.get<{ environment?: { server?: string } }>("/1.0");
    hub = info.environment?.server === "outpost-hub";
  } catch (err) {
    await Deno.remove(pinned).catch(() => {});
    throw new UsageError(`The server at ${server.url} refused the trust token: ${messageOf(err)}`);
  } finally {
    client.close();
  }
  cfg.remotes[name] = hub ? { addr: server.url, protocol: "outpost-hub" } : { addr: server.url };
  await writeConfig(dir, cfg);
}

interface RemoteRow {
  name: string;
  url: string;
  current: boolean;
}

const COLUMNS: Column<RemoteRow>[] = [
  { header: "NAME", value: (r) => (r.current ? `${r.name} (current)` : r.name) },
  { header: "URL", value: (r) => r.url },
];

export function remoteCommand(ctx: CliContext): CommandUnknownOpts {
  const remote = new Command("remote").description(
    "Manage the daemons this CLI drives (REMOTE:NAME in any command runs it on REMOTE)",
  );

  remote.command("add")
    .description(
      'Add a remote with a trust token (from "outpost config trust add" on it); with an ' +
        "address, the token's addresses are ignored",
    )
    .argument("<name>", "Name for the remote")
    .argument("<token-or-address>", "The trust token, or https://HOST:PORT with --token")
    .option("--token <token>", "The trust token, when an address is given")
    .option(
      "--accept-certificate",
      "With an address and no token: pin the server's certificate as first seen (its fingerprint is printed); the server must already trust this client",
    )
    .action((name, target, opts) =>
      addRemote(ctx, name, target, opts.token, opts.acceptCertificate ?? false)
    );

  remote.command("get-client-certificate")
    .description(
      "Print this client's certificate (made if missing), for a server to trust with config trust",
    )
    .action(async () => {
      await ensureClientCert(ctx.confDir);
      console.log((await Deno.readTextFile(clientCertFile(ctx.confDir))).trimEnd());
    });

  remote.command("list")
    .alias("ls")
    .description("List the remotes; the default one is marked (current)")
    .option(...FORMAT_OPTION)
    .action(async (opts) => {
      const format = parseFormat(opts.format);
      const cfg = ctx.config;
      const rows: RemoteRow[] = [
        { name: LOCAL_REMOTE, url: `unix://${socketPath(ctx.stateDir)}` },
        ...Object.entries(cfg.remotes).map(([name, r]) => ({ name, url: r.addr })),
      ].map((r) => ({ ...r, current: r.name === cfg["default-remote"] }));
      await printList(format, rows, COLUMNS);
    });

  remote.command("remove")
    .alias("rm")
    .description("Remove a remote (not the default one)")
    .argument("<name>", "Remote name")
    .action(async (name) => {
      const cfg = ctx.config;
      checkExisting(cfg, name, "removed");
      if (cfg["default-remote"] === name) {
        throw new UsageError(
          `Remote "${name}" is the default: run "outpost remote switch local" first`,
        );
      }
      delete cfg.remotes[name];
      await writeConfig(ctx.confDir, cfg);
      await Deno.remove(serverCertFile(ctx.confDir, name)).catch(() => {});
    });

  remote.command("rename")
    .description("Rename a remote")
    .argument("<old>", "Current name")
    .argument("<new>", "New name")
    .action(async (from, to) => {
      const cfg = ctx.config;
      checkExisting(cfg, from, "renamed");
      checkNewName(cfg, to);
      cfg.remotes[to] = cfg.remotes[from];
      delete cfg.remotes[from];
      if (cfg["default-remote"] === from) cfg["default-remote"] = to;
      await Deno.rename(serverCertFile(ctx.confDir, from), serverCertFile(ctx.confDir, to))
        .catch(() => {});
      await writeConfig(ctx.confDir, cfg);
    });

  remote.command("switch")
    .description("Make a remote the default: commands without REMOTE: run there")
    .argument("<name>", "Remote name")
    .action(async (name) => {
      const cfg = ctx.config;
      if (name !== LOCAL_REMOTE) checkExisting(cfg, name, "switched to");
      cfg["default-remote"] = name;
      await writeConfig(ctx.confDir, cfg);
    });

  remote.command("get-default")
    .description("Print the default remote")
    .action(() => console.log(ctx.config["default-remote"]));

  return remote;
}
