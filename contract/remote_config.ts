/**
 * The CLI's remotes, kept under the user's config dir (`OUTPOST_CONF`, else
 * `$XDG_CONFIG_HOME/outpost`, else `~/.config/outpost`): `config.yml` (the remotes and the
 * default one, written as JSON, which YAML readers read too and which parses fast at every
 * start-up), `client.crt` and `client.key` (the CLI's certificate), `servercerts/NAME.crt` (each
 * remote's pinned server certificate). `local`, the daemon's unix socket, is built in.
 */
import { LazyTransport, type Transport, TransportError } from "./transport.ts";

/** The built-in remote: the local daemon's unix socket. */
export const LOCAL_REMOTE = "local";

/** A remote name: letters, digits, `_`, `.` and `-` (never a `:`, which ends it in `NAME:`). */
export const REMOTE_NAME = /^[A-Za-z0-9_.-]+$/;

export interface RemoteEntry {
  /** `https://HOST:PORT`. */
  addr: string;
  /**
   * `outpost-hub` for a fleet hub: its hosts are reached through it (`REMOTE:HOST:NAME`);
   * absent for a daemon.
   */
  protocol?: "outpost-hub";
}

export interface ClientConfig {
  "default-remote": string;
  remotes: Record<string, RemoteEntry>;
}

/** The config dir the environment names. */
export function configDir(env: { get(key: string): string | undefined } = Deno.env): string {
  const explicit = env.get("OUTPOST_CONF");
  if (explicit) return explicit;
  const xdg = env.get("XDG_CONFIG_HOME");
  if (xdg) return `${xdg}/outpost`;
  return `${env.get("HOME") ?? "/root"}/.config/outpost`;
}

export function configFile(dir: string): string {
  return `${dir}/config.yml`;
}

export function clientCertFile(dir: string): string {
  return `${dir}/client.crt`;
}

export function clientKeyFile(dir: string): string {
  return `${dir}/client.key`;
}

export function serverCertFile(dir: string, remote: string): string {
  return `${dir}/servercerts/${remote}.crt`;
}

export function emptyConfig(): ClientConfig {
  return { "default-remote": LOCAL_REMOTE, remotes: {} };
}

/** Checks a parsed config: an object with a default remote and remotes of `https://` addresses. */
export function parseConfig(text: string, file = "config.yml"): ClientConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`${file} is not valid: expected the JSON outpost writes`);
  }
  const cfg = raw as Partial<ClientConfig>;
  const remotes = cfg?.remotes ?? {};
  const def = cfg?.["default-remote"] ?? LOCAL_REMOTE;
  const valid = typeof raw === "object" && raw !== null && typeof def === "string" &&
    typeof remotes === "object" &&
    Object.entries(remotes).every(([name, r]) =>
      REMOTE_NAME.test(name) && name !== LOCAL_REMOTE && typeof r?.addr === "string" &&
      r.addr.startsWith("https://") && (r.protocol === undefined || r.protocol === "outpost-hub")
    );
  if (!valid) throw new Error(`${file} is not valid: fix or remove it`);
  return { "default-remote": def, remotes };
}

/** The config in `dir` (the empty one when there is no file yet). */
export function readConfig(dir: string): ClientConfig {
  let text: string;
  try {
    text = Deno.readTextFileSync(configFile(dir));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return emptyConfig();
    throw err;
  }
  return parseConfig(text, configFile(dir));
}

/** Writes the config atomically (a temp file renamed over it); makes the dir if needed. */
export async function writeConfig(dir: string, cfg: ClientConfig): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${configFile(dir)}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  await Deno.rename(tmp, configFile(dir));
}

/**
 * The transport to remote `name` at `addr`, with the client certificate and the pinned server
 * certificate read from `dir` when it is first used.
 */
export function remoteTransport(dir: string, name: string, addr: string): Transport {
  return new LazyTransport(new URL(addr).host, async () => {
    const read = async (file: string) => {
      try {
        return await Deno.readTextFile(file);
      } catch (err) {
        throw new TransportError(
          `Cannot read ${file} for remote "${name}" (${
            err instanceof Error ? err.message : err
          }): remove the remote and add it again`,
        );
      }
    };
    const [cert, key, serverCert] = await Promise.all([
      read(clientCertFile(dir)),
      read(clientKeyFile(dir)),
      read(serverCertFile(dir, name)),
    ]);
    const { TlsTransport } = await import("./tls_transport.ts");
    return new TlsTransport({ name, url: addr, cert, key, serverCert });
  });
}
