/** `outpost daemon`: the foreground server on the state dir's unix socket. */
import { Agent } from "../agent/agent.ts";
import { createApp } from "../api/app.ts";
import { messageOf } from "../contract/errors.ts";
import { tuneNativeMemory } from "./native_memory.ts";
import { HttpsListener } from "../server/https_listener.ts";
import type { ConnectionEnv } from "../server/connection.ts";
import { claimSocket, listenUnix } from "../server/unix_listener.ts";
import { keepAliveOnUncaught, neverThrows, timestamped } from "../server/keep_alive.ts";
import { errorResponse } from "../server/node_bridge.ts";
import { CERT_FILE, KEY_FILE } from "../server/server_cert.ts";
import { join } from "node:path";
import { FleetClient } from "./fleet_client.ts";

export interface DaemonOptions {
  stateDir: string;
  /** No default network at the first start (`--no-network`, or OUTPOST_NO_NETWORK=1). */
  noNetwork?: boolean;
  log?: (msg: string) => void;
}

export interface RunningDaemon {
  agent: Agent;
  https: HttpsListener;
  finished: Promise<void>;
  shutdown(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const log = neverThrows(opts.log ?? timestamped);
  const memory = tuneNativeMemory();
  const agent = new Agent(opts.stateDir, log);
  agent.defaultNetwork = !(opts.noNetwork || Deno.env.get("OUTPOST_NO_NETWORK") === "1");
  try {
    await claimSocket(agent.paths.socket, "daemon");
    await agent.init();
  } catch (err) {
    agent.close();
    memory.close();
    throw err;
  }
  const app = createApp(agent);
  const guarded = guardedHandler(app.fetch, log);
  // Requests, and the operations and events they cause, are the daemon's work: a few seconds
  // after it stops, the memory it freed goes back to the kernel.
  const serve = (req: Request, env: ConnectionEnv) => {
    memory.touch();
    return guarded(req, env);
  };
  const https = new HttpsListener({
    credentials: async () => ({
      cert: await Deno.readTextFile(join(agent.paths.root, CERT_FILE)),
      key: await Deno.readTextFile(join(agent.paths.root, KEY_FILE)),
    }),
    fetch: serve,
    log,
  });
  agent.serverConfigAppliers.push((next) => https.apply(next["core.https_address"] ?? ""));
  try {
    await https.apply(agent.serverConfig()["core.https_address"] ?? "");
  } catch (err) {
    // A taken port must not keep the daemon from serving its socket: the listener can be moved.
    log(`https: ${messageOf(err)}`);
  }
  const unsubscribe = agent.events.subscribe(["operation", "lifecycle"], () => memory.touch());
  // The tunnel to the hub, while this host is enrolled with one.
  const fleet = new FleetClient({ agent, serve, log });
  fleet.start();
  const settler = setInterval(() => memory.settle(), 1_000);
  const server = await listenUnix(agent.paths.socket, serve, log);
  await Deno.chmod(agent.paths.socket, 0o660);
  await Deno.writeTextFile(agent.paths.pidfile, `${Deno.pid}\n`);
  log(`outpost daemon listening on ${agent.paths.socket} (pid ${Deno.pid})`);
  // Once a minute (and once at start-up): the snapshots schedules ask for are taken, expired
  // snapshots and backups are removed.
  const prune = async () => {
    const { taken, failed: missed } = await agent.snapshots.takeScheduled();
    for (const t of taken) log(`snapshot ${t} taken on schedule`);
    for (const m of missed) log(`scheduled snapshot failed: ${m}`);
    for (const b of await agent.backups.pruneExpired()) log(`backup ${b} expired: deleted`);
    const { pruned, failed } = await agent.snapshots.pruneExpired();
    for (const p of pruned) log(`snapshot ${p} expired: deleted`);
    for (const f of failed) log(`snapshot ${f} expired but could not be deleted`);
  };
  void prune().catch((err) => log(`snapshot expiry: ${messageOf(err)}`));
  const pruner = setInterval(
    () => void prune().catch((err) => log(`snapshot expiry: ${messageOf(err)}`)),
    60_000,
  );
  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      log("shutting down (instances keep running)");
      clearInterval(pruner);
      clearInterval(settler);
      unsubscribe();
      fleet.stop();
      // A subscriber that stopped reading would hold the shutdown forever: close them first.
      agent.events.close();
      await https.close();
      await server.close();
      await Deno.remove(agent.paths.pidfile).catch(() => {});
      agent.close();
      memory.close();
    })();
  return { agent, https, finished: server.finished, shutdown };
}

/**
 * The edge every request passes: nothing a handler throws escapes as anything but an error
 * envelope. (The bridge builds every request's URL from its path on a fixed origin, so a `Host`
 * header such as pylxd's `localhost:None` never reaches the app.)
 */
export function guardedHandler(
  fetch: (req: Request, env: ConnectionEnv) => Response | Promise<Response>,
  log: (msg: string) => void,
): (req: Request, env: ConnectionEnv) => Promise<Response> {
  return async (req, env) => {
    try {
      return await fetch(req, env);
    } catch (err) {
      log(`error: ${messageOf(err)}`);
      return errorResponse(500, "Internal error");
    }
  };
}

/** Runs until SIGTERM/SIGINT. Instances are left running: they outlive the daemon. */
export async function runDaemon(opts: DaemonOptions): Promise<void> {
  keepAliveOnUncaught(neverThrows(opts.log ?? timestamped));
  const d = await startDaemon(opts);
  const stop = () => void d.shutdown();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await d.finished;
  await d.shutdown();
}
