/**
 * proxy devices: a TCP or UDP port on the host forwarded to an address inside a container's
 * network namespace (`listen=tcp:0.0.0.0:8080 connect=tcp:127.0.0.1:80`). The daemon listens on
 * the host. Each TCP connection gets a host `busybox nc` that joins only the container's network
 * namespace (`nsenter -n`: the host's binary, the host's files) and connects there, so
 * `127.0.0.1` is the container's own loopback. UDP datagrams go through one relay per device,
 * the host's outpost run the same way (`udp_relay.ts`), one socket per client there, so replies
 * find their client. The container's init is looked up per connection (it changes with each
 * start). At most MAX_CONNECTIONS connections (MAX_SESSIONS UDP clients) per device; stopping the
 * device closes them all.
 */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { createSocket, type Socket } from "node:dgram";
import type { Runner } from "../runner.ts";
import { parseIpv4 } from "../network/ipv4.ts";
import {
  frame,
  FrameReader,
  MAX_QUEUED,
  MAX_SESSIONS,
  SESSION_IDLE_MS,
  UDP_RELAY_SUBCOMMAND,
} from "./udp_frame.ts";

export const MAX_CONNECTIONS = 256;

export interface ProxyAddress {
  transport: "tcp" | "udp";
  host: string;
  port: number;
}

/** `tcp:ADDRESS:PORT` or `udp:ADDRESS:PORT` (an IPv4 address); undefined for anything else. */
export function parseProxyAddress(text: string): ProxyAddress | undefined {
  const m = /^(tcp|udp):(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (!m || parseIpv4(m[2]) === undefined) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { transport: m[1] as "tcp" | "udp", host: m[2], port };
}

/** The command that runs the UDP relay: the compiled binary's hidden subcommand, or `deno run`. */
export function relayCommand(): string[] {
  const exe = Deno.execPath();
  if (basename(exe) !== "deno") return [exe, UDP_RELAY_SUBCOMMAND];
  const relay = fileURLToPath(new URL("./udp_relay.ts", import.meta.url));
  return [exe, "run", "--quiet", "--no-prompt", "--no-config", "--no-lock", "--allow-net", relay];
}

interface Forward {
  /** Closes the listener (or socket) and every connection. */
  close(): void;
}

interface UdpForward extends Forward {
  /** Settles once the socket is bound (rejects when the address cannot be had). */
  bound: Promise<void>;
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
  ): Promise<void> | void {
    this.stop(key);
    if (listen.transport === "udp") {
      const fwd = this.#udp(listen, connect, pid);
      this.#forwards.set(key, fwd);
      return fwd.bound.catch((err) => {
        this.stop(key);
        throw err;
      });
    }
    const listener = Deno.listen({ hostname: listen.host, port: listen.port, transport: "tcp" });
    const open = new Set<() => void>();
    this.#forwards.set(key, {
      close: () => {
        try {
          listener.close();
        } catch {
          // Closed already.
        }
        for (const close of open) close();
      },
    });
    (async () => {
      for await (const conn of listener) {
        if (open.size >= MAX_CONNECTIONS) {
          conn.close();
          continue;
        }
        void this.#serve(open, conn, connect, pid);
      }
    })().catch(() => {});
  }

  /**
   * A UDP forward: a socket on the host; each client a session of the relay (started with the
   * first datagram, again if it exits), its replies sent back to the client.
   */
  #udp(listen: ProxyAddress, connect: ProxyAddress, pid: () => Promise<number>): UdpForward {
    // node:dgram (Deno's own UDP sockets need --unstable-net).
    const socket: Socket = createSocket("udp4");
    const bound = new Promise<void>((resolve, reject) => {
      socket.once("listening", () => resolve());
      socket.once("error", reject);
    });
    bound.then(() =>
      socket.on("error", (err) => this.log(`proxy: udp ${listen.host}:${listen.port}: ${err}`))
    ).catch(() => {});
    socket.bind(listen.port, listen.host);
    const byClient = new Map<string, { id: number; used: number }>();
    const byId = new Map<number, { address: string; port: number }>();
    let nextId = 1;
    let relay: { child: Deno.ChildProcess; queued: number; writing: Promise<void> } | undefined;
    let starting: Promise<typeof relay> | undefined;
    /** Bytes of replies handed to the socket and not yet sent. */
    let sending = 0;
    let closed = false;

    const startRelay = async () => {
      const target = await pid();
      if (target <= 0 || closed) return undefined;
      const child = this.runner.spawn(
        [
          "nsenter",
          "-t",
          String(target),
          "-n",
          ...relayCommand(),
          connect.host,
          String(connect.port),
        ],
        { stdin: true },
      );
      void child.stderr.cancel();
      const r = { child, queued: 0, writing: Promise.resolve() };
      const reader = new FrameReader();
      (async () => {
        for await (const chunk of child.stdout) {
          for (const { id, payload } of reader.push(chunk)) {
            const to = byId.get(id);
            // Replies a client does not take fast enough are dropped, not queued without end.
            if (!to || closed || sending > MAX_QUEUED) continue;
            sending += payload.length;
            socket.send(payload, to.port, to.address, () => sending -= payload.length);
          }
        }
      })().catch(() => {}).finally(() => {
        if (relay === r) relay = undefined;
      });
      return r;
    };

    socket.on("message", (msg, rinfo) => {
      void (async () => {
        const client = `${rinfo.address}:${rinfo.port}`;
        let s = byClient.get(client);
        if (!s) {
          if (byClient.size >= MAX_SESSIONS) return;
          s = { id: nextId++, used: 0 };
          byClient.set(client, s);
          byId.set(s.id, { address: rinfo.address, port: rinfo.port });
        }
        s.used = Date.now();
        if (!relay) {
          starting ??= startRelay().finally(() => starting = undefined);
          relay = await starting;
        }
        const r = relay;
        if (!r || r.queued > MAX_QUEUED) return;
        const bytes = frame(s.id, new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
        r.queued += bytes.length;
        r.writing = r.writing.then(async () => {
          const w = r.child.stdin.getWriter();
          try {
            await w.write(bytes);
          } finally {
            w.releaseLock();
            r.queued -= bytes.length;
          }
        }).catch(() => {});
      })().catch((err) => this.log(`proxy: udp: ${err}`));
    });

    const sweep = setInterval(() => {
      const now = Date.now();
      for (const [client, s] of byClient) {
        if (now - s.used > SESSION_IDLE_MS) {
          byClient.delete(client);
          byId.delete(s.id);
        }
      }
    }, 10_000);
    return {
      bound,
      close: () => {
        closed = true;
        clearInterval(sweep);
        try {
          socket.close();
        } catch {
          // Closed already.
        }
        try {
          relay?.child.kill("SIGKILL");
        } catch {
          // Gone already.
        }
      },
    };
  }

  /** Stops the forward under `key`: its listener and every connection. */
  stop(key: string): void {
    const fwd = this.#forwards.get(key);
    if (!fwd) return;
    this.#forwards.delete(key);
    fwd.close();
  }

  /** Stops every forward whose key starts with `prefix`. */
  stopAll(prefix: string): void {
    for (const key of [...this.#forwards.keys()]) if (key.startsWith(prefix)) this.stop(key);
  }

  async #serve(
    open: Set<() => void>,
    conn: Deno.TcpConn,
    connect: ProxyAddress,
    pid: () => Promise<number>,
  ): Promise<void> {
    let child: Deno.ChildProcess | undefined;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      open.delete(close);
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
    open.add(close);
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
