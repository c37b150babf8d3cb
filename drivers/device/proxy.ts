/**
 * proxy devices: a TCP port on the host forwarded to an address inside a container's network
 * namespace (`listen=tcp:0.0.0.0:8080 connect=tcp:127.0.0.1:80`). The daemon listens on the host;
 * each connection gets a host `busybox nc` that joins only the container's network namespace
 * (`nsenter -n`: the host's binary, the host's files) and connects there, so `127.0.0.1` is the
 * container's own loopback. The container's init is looked up per connection (it changes with
 * each start). At most MAX_CONNECTIONS per device; stopping the device closes every connection.
 */
import type { Runner } from "../runner.ts";
import { parseIpv4 } from "../network/ipv4.ts";

export const MAX_CONNECTIONS = 256;

export interface ProxyAddress {
  transport: "tcp";
  host: string;
  port: number;
}

/** `tcp:ADDRESS:PORT` (an IPv4 address); undefined for anything else. */
export function parseProxyAddress(text: string): ProxyAddress | undefined {
  const m = /^tcp:(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (!m || parseIpv4(m[1]) === undefined) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { transport: "tcp", host: m[1], port };
}

interface Forward {
  listener: Deno.TcpListener;
  open: Set<() => void>;
}

export class ProxyForwarder {
  #forwards = new Map<string, Forward>();

  constructor(private runner: Runner, private log: (msg: string) => void) {}

  /** Whether a forward runs under `key`. */
  has(key: string): boolean {
    return this.#forwards.has(key);
  }

  /**
   * Listens on `listen` and forwards each connection to `connect` inside the network namespace
   * of the process `pid()` answers (none: the connection is closed). Throws if the host address
   * cannot be bound.
   */
  start(
    key: string,
    listen: ProxyAddress,
    connect: ProxyAddress,
    pid: () => Promise<number>,
  ): void {
    this.stop(key);
    const listener = Deno.listen({ hostname: listen.host, port: listen.port, transport: "tcp" });
    const fwd: Forward = { listener, open: new Set() };
    this.#forwards.set(key, fwd);
    (async () => {
      for await (const conn of listener) {
        if (fwd.open.size >= MAX_CONNECTIONS) {
          conn.close();
          continue;
        }
        void this.#serve(fwd, conn, connect, pid);
      }
    })().catch(() => {});
  }

  /** Stops the forward under `key`: its listener and every connection. */
  stop(key: string): void {
    const fwd = this.#forwards.get(key);
    if (!fwd) return;
    this.#forwards.delete(key);
    try {
      fwd.listener.close();
    } catch {
      // Closed already.
    }
    for (const close of fwd.open) close();
  }

  /** Stops every forward whose key starts with `prefix`. */
  stopAll(prefix: string): void {
    for (const key of [...this.#forwards.keys()]) if (key.startsWith(prefix)) this.stop(key);
  }

  async #serve(
    fwd: Forward,
    conn: Deno.TcpConn,
    connect: ProxyAddress,
    pid: () => Promise<number>,
  ): Promise<void> {
    let child: Deno.ChildProcess | undefined;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      fwd.open.delete(close);
      try {
        conn.close();
      } catch {
        // Closed already.
      }
      try {
        child?.kill("SIGKILL");
      } catch {
        // Gone already.
      }
    };
    fwd.open.add(close);
    try {
      const target = await pid();
      if (target <= 0 || closed) return close();
      child = this.runner.spawn([
        "nsenter",
        "-t",
        String(target),
        "-n",
        "busybox",
        "nc",
        connect.host,
        String(connect.port),
      ], { stdin: true });
      void child.stderr.cancel();
      const up = conn.readable.pipeTo(child.stdin).catch(() => {});
      const down = child.stdout.pipeTo(conn.writable).catch(() => {});
      // Either side done: the other is closed with it (by close() below).
      await Promise.race([down, child.status]);
      void up;
    } catch (err) {
      this.log(`proxy: ${(err as Error).message}`);
    } finally {
      close();
      await child?.status.catch(() => {});
    }
  }
}
