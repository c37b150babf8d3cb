/**
 * The UDP half of a proxy device, run in an instance's network namespace (`nsenter -n`, the host's
 * binary): datagrams framed on stdin (`udp_frame.ts`) go to HOST:PORT from one socket per
 * session, and the replies come back framed on stdout. A session idle for a minute is closed; at
 * most MAX_SESSIONS live at once. It exits when stdin ends.
 */
import { createSocket, type Socket } from "node:dgram";
import { frame, FrameReader, MAX_QUEUED, MAX_SESSIONS, SESSION_IDLE_MS } from "./udp_frame.ts";

export async function udpRelayMain(args: string[]): Promise<number> {
  const [host, portText] = args;
  const port = Number(portText);
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    console.error("usage: udp-relay HOST PORT");
    return 2;
  }
  const sessions = new Map<number, { socket: Socket; used: number }>();
  const out = Deno.stdout;
  let writing = Promise.resolve();
  let queued = 0;
  const send = (bytes: Uint8Array) => {
    // A target that answers faster than the daemon reads cannot grow this process.
    if (queued > MAX_QUEUED) return;
    queued += bytes.length;
    writing = writing.then(async () => {
      let off = 0;
      while (off < bytes.length) off += await out.write(bytes.subarray(off));
    }).catch(() => {}).finally(() => queued -= bytes.length);
  };
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [id, s] of sessions) {
      if (now - s.used > SESSION_IDLE_MS) {
        s.socket.close();
        sessions.delete(id);
      }
    }
  }, 5_000);
  const reader = new FrameReader();
  for await (const chunk of Deno.stdin.readable) {
    for (const { id, payload } of reader.push(chunk)) {
      let s = sessions.get(id);
      if (!s) {
        if (sessions.size >= MAX_SESSIONS) continue;
        const socket = createSocket("udp4");
        socket.on("message", (msg, from) => {
          // Only the target's replies: anything else in the namespace may send to this port.
          if (from.port !== port || (from.address !== host && host !== "0.0.0.0")) return;
          const cur = sessions.get(id);
          if (cur) cur.used = Date.now();
          send(frame(id, new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength)));
        });
        socket.on("error", () => {});
        s = { socket, used: Date.now() };
        sessions.set(id, s);
      }
      s.used = Date.now();
      s.socket.send(payload, port, host);
    }
  }
  clearInterval(sweep);
  for (const s of sessions.values()) s.socket.close();
  await writing;
  return 0;
}

if (import.meta.main) Deno.exit(await udpRelayMain(Deno.args));
