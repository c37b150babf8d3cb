/**
 * The unix socket listener: the same node server and bridge as HTTPS (so websockets and raw
 * upgrades such as SFTP work alike), every caller trusted as the socket's file mode allows.
 */
import { createServer } from "node:http";
import type { Socket } from "node:net";
import { type BridgeOptions, serveApp, SERVER_OPTIONS } from "./node_bridge.ts";
import { closeOnExec } from "./cloexec.ts";

export interface UnixListener {
  /** Settles when the listener has closed. */
  finished: Promise<void>;
  /** Stops listening and ends every connection. */
  close(): Promise<void>;
}

/**
 * Makes `path` free for a new listener: refuses when a live server (`what`) answers there, and
 * removes a stale socket a crash left behind.
 */
export async function claimSocket(path: string, what: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch {
    return;
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
  } catch {
    await Deno.remove(path);
    return;
  }
  throw new Error(`Another ${what} is already serving ${path}`);
}

export async function listenUnix(
  path: string,
  fetch: BridgeOptions["fetch"],
  log: (msg: string) => void,
): Promise<UnixListener> {
  const server = createServer(SERVER_OPTIONS);
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  serveApp(server, { fetch, callerOf: () => ({ via: "unix" }), log });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  if (closeOnExec() < 0) log("unix socket: cannot mark descriptors close-on-exec (no libc)");
  server.on("error", (err) => log(`unix socket: ${err.message}`));
  const finished = new Promise<void>((r) => server.once("close", () => r()));
  return {
    finished,
    close: async () => {
      if (!server.listening) return;
      server.close();
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
      await finished;
    },
  };
}
