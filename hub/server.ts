/**
 * `outpost hub`: the fleet's central server. Its state dir holds its certificate, its database
 * and `hub.socket` (the local admin's way in, mode 0600); hosts and remote clients reach it over
 * HTTPS on `--listen`.
 */
import { hostname, userInfo } from "node:os";
import { join } from "node:path";
import { messageOf } from "../contract/errors.ts";
import { formatListenAddress, parseListenAddress } from "../contract/listen_address.ts";
import { httpsAddresses } from "../server/addresses.ts";
import { HttpsListener } from "../server/https_listener.ts";
import { errorResponse } from "../server/node_bridge.ts";
import { CERT_FILE, ensureServerCert, KEY_FILE, runCommand } from "../server/server_cert.ts";
import { claimSocket, listenUnix } from "../server/unix_listener.ts";
import { keepAliveOnUncaught, neverThrows, timestamped } from "../server/keep_alive.ts";
import type { ConnectionEnv } from "../server/connection.ts";
import { createHubApp } from "./app.ts";
import { packAgent } from "./agent_program.ts";
import { Fleet } from "./fleet.ts";
import { SqlHubStore } from "./store.ts";
import { PostgresDb, SqliteDb } from "./sql.ts";

export const HUB_SOCKET = "hub.socket";
export const DEFAULT_HUB_DIR = "/var/lib/outpost-hub";

export interface HubOptions {
  stateDir: string;
  /** Where to listen for HTTPS (`[::]:8443`). */
  listen: string;
  /** The URLs join tokens name (default: the listen address, every host address for a wildcard). */
  urls?: string[];
  heartbeatSeconds?: number;
  /** A PostgreSQL URL (`postgres://...`) several hubs share; default: SQLite in the state dir. */
  database?: string;
  log?: (msg: string) => void;
}

/** A database URL without its password, for messages. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
}

export interface RunningHub {
  fleet: Fleet;
  https: HttpsListener;
  finished: Promise<void>;
  shutdown(): Promise<void>;
}

/** Writes a file atomically (a temp file renamed over it), readable by root only. */
async function writePrivate(path: string, text: string): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, text, { mode: 0o600 });
  await Deno.rename(tmp, path);
}

export async function startHub(opts: HubOptions): Promise<RunningHub> {
  const log = neverThrows(opts.log ?? timestamped);
  await Deno.mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
  const socket = join(opts.stateDir, HUB_SOCKET);
  await claimSocket(socket, "hub");
  const listen = formatListenAddress(parseListenAddress(opts.listen));
  const cert = await ensureServerCert(runCommand, opts.stateDir, {
    hostname: hostname(),
    user: userInfo().username,
  });
  const urls = opts.urls?.length ? opts.urls : httpsAddresses(listen).map((a) => `https://${a}`);
  // A hub that cannot pack its own program (a compiled binary has no source tree on disk) serves
  // everything but installs and upgrades.
  const program = await packAgent(join(opts.stateDir, "agent")).catch((err) => {
    log(`hub: no agent program to serve to hosts: ${messageOf(err)}`);
    return undefined;
  });
  const db = opts.database
    ? await PostgresDb.connect(opts.database, log).catch((err) => {
      throw new Error(`Cannot use the database at ${redact(opts.database!)}: ${messageOf(err)}`);
    })
    : new SqliteDb(join(opts.stateDir, "hub.db"));
  const store = await SqlHubStore.open(db).catch(async (err) => {
    await db.close();
    throw err;
  });
  // Every hub on one database presents the first one's certificate: hosts pin it once and may
  // then reach any of them.
  const local = {
    certificate: cert.certificate,
    key: await Deno.readTextFile(join(opts.stateDir, KEY_FILE)),
  };
  const identity = await store.claimIdentity(local);
  if (identity.certificate !== local.certificate) {
    await writePrivate(join(opts.stateDir, KEY_FILE), identity.key);
    await writePrivate(join(opts.stateDir, CERT_FILE), identity.certificate);
    log("hub: presenting the certificate of the fleet's first hub (from the database)");
  }
  const id = urls[0] ?? `https://${listen}`;
  const fleet = new Fleet({
    store,
    id,
    urls,
    certificate: identity.certificate,
    heartbeatSeconds: opts.heartbeatSeconds ?? 10,
    log,
  });
  // Tunnels this hub held before a crash are gone: their hosts reconnect.
  for (const h of await store.listHosts()) {
    if (h.hub === id) await store.setConnection(h.name, "", h.last_seen);
  }
  const app = createHubApp({ fleet, program, log });
  const serve = async (req: Request, env: ConnectionEnv) => {
    try {
      return await app.fetch(req, env);
    } catch (err) {
      log(`hub: error: ${messageOf(err)}`);
      return errorResponse(500, "Internal error");
    }
  };
  const https = new HttpsListener({
    credentials: async () => ({
      cert: await Deno.readTextFile(join(opts.stateDir, CERT_FILE)),
      key: await Deno.readTextFile(join(opts.stateDir, KEY_FILE)),
    }),
    fetch: serve,
    log,
  });
  try {
    await https.apply(listen);
    const unix = await listenUnix(socket, serve, log);
    await Deno.chmod(socket, 0o600);
    const sweeper = setInterval(() => fleet.sessions.sweep(), fleet.heartbeatSeconds * 1000);
    log(`outpost hub ${id} (fingerprint ${fleet.fingerprint}), admin socket ${socket}`);
    let stopping: Promise<void> | undefined;
    const shutdown = () =>
      stopping ??= (async () => {
        clearInterval(sweeper);
        fleet.sessions.closeAll("The hub is shutting down");
        await https.close();
        await unix.close();
        for (const h of await store.listHosts()) {
          if (h.hub === id) await store.setConnection(h.name, "", h.last_seen);
        }
        await store.close();
      })();
    return { fleet, https, finished: unix.finished, shutdown };
  } catch (err) {
    await https.close();
    await store.close();
    throw err;
  }
}

/** Runs the hub until SIGTERM/SIGINT. */
export async function runHub(opts: HubOptions): Promise<void> {
  keepAliveOnUncaught(neverThrows(opts.log ?? timestamped));
  const hub = await startHub(opts);
  const stop = () => void hub.shutdown();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await hub.finished;
  await hub.shutdown();
}
