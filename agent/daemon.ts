/** `outpost daemon`: the foreground server on the state dir's unix socket. */
import { Agent } from "./agent.ts";
import { createApp } from "../api/app.ts";
import { messageOf } from "./errors.ts";

export interface DaemonOptions {
  stateDir: string;
  log?: (msg: string) => void;
}

export interface RunningDaemon {
  agent: Agent;
  finished: Promise<void>;
  shutdown(): Promise<void>;
}

function timestamped(msg: string): void {
  console.error(`${new Date().toISOString()} ${msg}`);
}

/** Refuses to start over a live daemon; removes a stale socket left by a crash. */
async function claimSocket(path: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch {
    return;
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new Error(`Another daemon is already serving ${path}`);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("Another daemon")) throw err;
    await Deno.remove(path);
  }
}

export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const log = opts.log ?? timestamped;
  const agent = new Agent(opts.stateDir, log);
  try {
    await claimSocket(agent.paths.socket);
    await agent.init();
  } catch (err) {
    agent.close();
    throw err;
  }
  const app = createApp(agent);
  const server = Deno.serve({
    path: agent.paths.socket,
    transport: "unix",
    onListen: () => {},
    onError: (err) => {
      log(`error: ${messageOf(err)}`);
      return new Response(
        JSON.stringify({ type: "error", error: messageOf(err), error_code: 500 }),
        {
          status: 500,
        },
      );
    },
  }, app.fetch);
  await Deno.chmod(agent.paths.socket, 0o660);
  await Deno.writeTextFile(agent.paths.pidfile, `${Deno.pid}\n`);
  log(`outpost daemon listening on ${agent.paths.socket} (pid ${Deno.pid})`);
  // Expired snapshots are removed once a minute (and once at start-up).
  const prune = async () => {
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
      await server.shutdown();
      await Deno.remove(agent.paths.pidfile).catch(() => {});
      agent.close();
    })();
  return { agent, finished: server.finished, shutdown };
}

/** Runs until SIGTERM/SIGINT. Instances are left running: they outlive the daemon. */
export async function runDaemon(opts: DaemonOptions): Promise<void> {
  const d = await startDaemon(opts);
  const stop = () => void d.shutdown();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await d.finished;
  await d.shutdown();
}
