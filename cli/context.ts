/**
 * What every command shares: the state dir, the remote it runs on and its API client, and the
 * exit code for main.ts.
 */
import { ApiClient } from "../contract/client.ts";
import {
  type ClientConfig,
  configDir,
  LOCAL_REMOTE,
  readConfig,
  remoteTransport,
} from "../contract/remote_config.ts";
import {
  hubSocketPath,
  resolveHubDir,
  resolveStateDir,
  socketPath,
} from "../contract/state_dir.ts";
import { FLEET_API } from "../contract/urls.ts";

export class CliContext {
  exitCode = 0;
  /** The remote the command line named (`REMOTE:`); the default remote when none. */
  remote?: string;
  /** Through a hub remote: the host the command runs on (`hub:HOST:`). */
  remoteHost?: string;
  #client?: ApiClient;
  #hubClient?: ApiClient;
  #config?: ClientConfig;

  constructor(private stateDirFlag?: () => string | undefined) {}

  get stateDir(): string {
    return resolveStateDir(this.stateDirFlag?.());
  }

  /** The hub's state dir (`--state-dir` names it for hub commands). */
  get hubDir(): string {
    return resolveHubDir(this.stateDirFlag?.());
  }

  /**
   * A client of the hub: the hub remote the command line names (or the default remote, when it
   * is a hub), else the hub on this machine through its admin socket.
   */
  get hubClient(): ApiClient {
    if (this.#hubClient) return this.#hubClient;
    const name = this.remoteName;
    if (this.isHubRemote(name)) {
      const entry = this.config.remotes[name];
      return this.#hubClient = new ApiClient(remoteTransport(this.confDir, name, entry.addr));
    }
    if (this.remote !== undefined && this.remote !== LOCAL_REMOTE) {
      throw new UsageError(`Remote "${this.remote}" is not a fleet hub`);
    }
    return this.#hubClient = new ApiClient(hubSocketPath(this.hubDir));
  }

  /** The CLI's config dir (remotes, client certificate). */
  get confDir(): string {
    return configDir();
  }

  /** The remotes config, read once. */
  get config(): ClientConfig {
    try {
      this.#config ??= readConfig(this.confDir);
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    return this.#config;
  }

  /** Whether `name` is a remote: `local` or a configured one. */
  isRemote(name: string): boolean {
    return name === LOCAL_REMOTE || Object.hasOwn(this.config.remotes, name);
  }

  /** Whether `name` is a configured fleet hub (its hosts are `NAME:HOST:`). */
  isHubRemote(name: string): boolean {
    return this.isRemote(name) && this.config.remotes[name]?.protocol === "outpost-hub";
  }

  /** The remote the command runs on. */
  get remoteName(): string {
    return this.remote ?? this.config["default-remote"];
  }

  get client(): ApiClient {
    if (this.#client) return this.#client;
    const name = this.remoteName;
    if (name === LOCAL_REMOTE) return this.#client = new ApiClient(socketPath(this.stateDir));
    const entry = this.config.remotes[name];
    if (!entry) {
      throw new UsageError(
        `Remote "${name}" is not configured: see "outpost remote list" or run "outpost remote switch local"`,
      );
    }
    if (entry.protocol === "outpost-hub" && this.remoteHost === undefined) {
      throw new UsageError(
        `Remote "${name}" is a fleet hub: name a host, as in ${name}:HOST: or ${name}:HOST:INSTANCE`,
      );
    }
    return this.#client = new ApiClient(remoteTransport(this.confDir, name, entry.addr), {
      basePath: entry.protocol === "outpost-hub"
        ? `${FLEET_API}/hosts/${encodeURIComponent(this.remoteHost!)}`
        : undefined,
      // The daemon's word for a certificate it does not trust (a restricted one gets others).
      forbiddenHint: (message) =>
        /not authorized/i.test(message)
          ? `is this client still trusted by remote "${name}"? If not, remove the remote and ` +
            `add it again with a new token`
          : undefined,
    });
  }

  close(): void {
    this.#client?.close();
    this.#hubClient?.close();
  }
}

/** An error the CLI prints as one line (exit code 1). */
export class UsageError extends Error {}

/** Parses repeated `key=value` arguments into a map. */
export function parseKeyValues(items: string[], what = "config"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const i = item.indexOf("=");
    if (i <= 0) throw new UsageError(`Invalid ${what} "${item}": expected key=value`);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

/** Writes the body of `GET path` (a file download) to `file`; an error answer is a UsageError. */
export async function download(ctx: CliContext, path: string, file: string): Promise<void> {
  const res = await ctx.client.fetch("GET", path);
  if (!res.ok || !res.body) {
    const env = await res.json().catch(() => ({}));
    throw new UsageError(env.error ?? `HTTP ${res.status}`);
  }
  const out = await Deno.open(file, { write: true, create: true, truncate: true });
  await res.body.pipeTo(out.writable);
}

/** The values of a `set` command: `key value` (one pair) or `key=value...`. */
export function setArgs(args: string[], what = "config"): Record<string, string> {
  if (args.length === 2 && !args[0].includes("=")) return { [args[0]]: args[1] };
  return parseKeyValues(args, what);
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseIntOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) {
      throw new UsageError(`Invalid ${name} "${value}": expected a whole number`);
    }
    return n;
  };
}
