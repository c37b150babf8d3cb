import assert from "node:assert/strict";
import { concatBytes } from "./bytes.ts";
import {
  acceptFor,
  connectUnix,
  HandshakeError,
  type Message,
  WebSocketClient,
  WebSocketError,
} from "./websocket.ts";

const enc = new TextEncoder();

/** The clients a test opened: closed before its server stops, even when the test fails. */
const opened: WebSocketClient[] = [];

async function open(
  socketPath: string,
  path: string,
  options?: { maxMessageSize?: number },
): Promise<WebSocketClient> {
  const ws = await connectUnix(socketPath, path, options);
  opened.push(ws);
  return ws;
}

async function closeOpened(): Promise<void> {
  await deadline(Promise.all(opened.splice(0).map((ws) => ws.close())), 5_000, "close()");
}

/** `work`, failing instead of hanging when it takes over `ms`. */
async function deadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A temp dir holding one socket path, removed by `cleanup`. */
async function tempSocket(): Promise<{ path: string; cleanup(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-ws-" });
  return { path: `${dir}/ws.sock`, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

/** A Deno websocket server on a unix socket; `onSocket` gets each server-side socket. */
async function withServer(
  onSocket: (socket: WebSocket) => void,
  fn: (path: string) => Promise<void>,
  refuse?: (req: Request) => Response | undefined,
): Promise<void> {
  const sock = await tempSocket();
  const server = Deno.serve({ path: sock.path, transport: "unix", onListen() {} }, (req) => {
    const no = refuse?.(req);
    if (no) return no;
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.binaryType = "arraybuffer";
    onSocket(socket);
    return response;
  });
  try {
    await deadline(fn(sock.path), 10_000, "The test");
  } finally {
    await closeOpened();
    await server.shutdown();
    await sock.cleanup();
  }
}

/** An echo server: every message comes back as it went. */
function echo(socket: WebSocket): void {
  socket.onmessage = (e) => socket.send(e.data);
}

async function next(ws: WebSocketClient): Promise<Message> {
  const msg = await ws.receive();
  assert.ok(msg, "a message");
  return msg;
}

/** One frame as a client sent it, unmasked. */
interface ClientFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Uint8Array;
}

/** A raw server: answers the upgrade with `head(accept)` then hands the connection over. */
async function withRawServer(
  script: (conn: Deno.Conn, frames: () => Promise<ClientFrame>) => Promise<void>,
  fn: (path: string) => Promise<void>,
  head: (accept: string) => string = (accept) =>
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  extra: Uint8Array = new Uint8Array(),
): Promise<void> {
  const sock = await tempSocket();
  const listener = Deno.listen({ transport: "unix", path: sock.path });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      let pending = new Uint8Array();
      const take = async (n: number): Promise<Uint8Array> => {
        while (pending.length < n) {
          const buf = new Uint8Array(65536);
          const got = await conn.read(buf);
          if (got === null) throw new Error("client went away");
          const more = new Uint8Array(pending.length + got);
          more.set(pending);
          more.set(buf.subarray(0, got), pending.length);
          pending = more;
        }
        const out = pending.slice(0, n);
        pending = pending.slice(n);
        return out;
      };
      let request = "";
      while (!request.endsWith("\r\n\r\n")) request += new TextDecoder().decode(await take(1));
      const key = /Sec-WebSocket-Key: (\S+)/i.exec(request)![1];
      const answer = enc.encode(head(await acceptFor(key)));
      const first = new Uint8Array(answer.length + extra.length);
      first.set(answer);
      first.set(extra, answer.length);
      // The head and the first frames in one write.
      for (let off = 0; off < first.length;) off += await conn.write(first.subarray(off));
      const frames = async (): Promise<ClientFrame> => {
        const [b0, b1] = await take(2);
        let len = b1 & 0x7f;
        if (len === 126) len = new DataView((await take(2)).buffer).getUint16(0);
        else if (len === 127) len = Number(new DataView((await take(8)).buffer).getBigUint64(0));
        const masked = (b1 & 0x80) !== 0;
        const mask = masked ? await take(4) : new Uint8Array(4);
        const payload = await take(len);
        for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
        return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload };
      };
      await script(conn, frames);
    } finally {
      conn.close();
    }
  })();
  try {
    await deadline(fn(sock.path), 10_000, "The test");
  } finally {
    await closeOpened();
    listener.close();
    await deadline(served, 5_000, "The raw server").finally(() => sock.cleanup());
  }
}

/** A server frame (unmasked). */
function frame(opcode: number, payload: Uint8Array | string, fin = true): Uint8Array {
  const data = typeof payload === "string" ? enc.encode(payload) : payload;
  const ext = data.length < 126 ? 0 : data.length < 65536 ? 2 : 8;
  const out = new Uint8Array(2 + ext + data.length);
  out[0] = (fin ? 0x80 : 0) | opcode;
  const view = new DataView(out.buffer);
  if (ext === 0) out[1] = data.length;
  else if (ext === 2) {
    out[1] = 126;
    view.setUint16(2, data.length);
  } else {
    out[1] = 127;
    view.setBigUint64(2, BigInt(data.length));
  }
  out.set(data, 2 + ext);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

Deno.test("a websocket echoes text and binary messages through a Deno server", async () => {
  await withServer(echo, async (path) => {
    const ws = await open(path, "/echo");
    await ws.send("héllo");
    assert.deepEqual(await next(ws), { type: "text", data: "héllo" });
    await ws.send(new Uint8Array([0, 1, 2, 255]));
    assert.deepEqual(await next(ws), { type: "binary", data: new Uint8Array([0, 1, 2, 255]) });
    await ws.send("");
    assert.deepEqual(await next(ws), { type: "text", data: "" });
    const info = await ws.close();
    assert.equal(info.code, 1000);
    assert.equal(await ws.receive(), null);
  });
});

Deno.test("a websocket carries messages with 16-bit and 64-bit lengths", async () => {
  await withServer(echo, async (path) => {
    const ws = await open(path, "/echo");
    for (const size of [125, 126, 1000, 65535, 65536, 200_003]) {
      const data = Uint8Array.from({ length: size }, (_, i) => (i * 7 + size) & 0xff);
      await ws.send(data);
      const got = await next(ws);
      assert.equal(got.type, "binary");
      assert.deepEqual(got.data, data, `${size} bytes`);
    }
    const text = "x".repeat(70_000);
    await ws.send(text);
    assert.deepEqual(await next(ws), { type: "text", data: text });
    await ws.close();
  });
});

Deno.test("messages are yielded by for await until the server closes", async () => {
  await withServer((socket) => {
    socket.onopen = () => {
      socket.send("one");
      socket.send(new Uint8Array([2]));
      socket.close(4002, "done");
    };
  }, async (path) => {
    const ws = await open(path, "/");
    const got: Message[] = [];
    for await (const msg of ws) got.push(msg);
    assert.deepEqual(got, [
      { type: "text", data: "one" },
      { type: "binary", data: new Uint8Array([2]) },
    ]);
    assert.deepEqual(await ws.closed, { code: 4002, reason: "done" });
    assert.equal(ws.isOpen, false);
    await assert.rejects(ws.send("late"), WebSocketError);
  });
});

Deno.test("close() sends its code and reason to the server", async () => {
  const seen = Promise.withResolvers<{ code: number; reason: string }>();
  await withServer((socket) => {
    socket.onclose = (e) => seen.resolve({ code: e.code, reason: e.reason });
  }, async (path) => {
    const ws = await open(path, "/");
    const info = await ws.close(4001, "bye");
    assert.equal(info.code, 4001);
    assert.deepEqual(await seen.promise, { code: 4001, reason: "bye" });
    assert.throws(() => ws.close(1005), RangeError);
  });
});

Deno.test("a refused upgrade fails with the status and the Incus error message", async () => {
  await withServer(echo, async (path) => {
    const err = await open(path, "/1.0/operations/x/websocket?secret=s3cret").then(
      () => assert.fail("connected"),
      (e) => e,
    );
    assert.ok(err instanceof HandshakeError);
    assert.equal(err.status, 404);
    assert.equal(err.serverError, 'Operation "x" not found');
    assert.match(err.message, /404 Not Found: Operation "x" not found/);
    assert.doesNotMatch(err.message, /s3cret|\n/);
    // Without an envelope, the status line alone.
    const plain = await open(path, "/plain").catch((e) => e);
    assert.ok(plain instanceof HandshakeError);
    assert.match(plain.message, /\/plain refused \(500 Internal Server Error\)/);
  }, (req) => {
    if (new URL(req.url).pathname === "/plain") return new Response("oops", { status: 500 });
    return Response.json({
      type: "error",
      error: 'Operation "x" not found',
      error_code: 404,
    }, { status: 404 });
  });
});

Deno.test("a wrong Sec-WebSocket-Accept is refused", async () => {
  await withRawServer(
    async () => {},
    async (path) => {
      await assert.rejects(
        open(path, "/"),
        (e) => e instanceof HandshakeError && /wrong Sec-WebSocket-Accept/.test(e.message),
      );
    },
    () =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${btoa("not the right hash!!")}\r\n\r\n`,
  );
});

Deno.test("an endless response head is refused at 16 KiB", async () => {
  await withRawServer(
    async () => {},
    async (path) => {
      await assert.rejects(open(path, "/"), /head is over 16 KiB/);
    },
    () => `HTTP/1.1 101 Switching Protocols\r\nX-Pad: ${"a".repeat(20_000)}\r\n\r\n`,
  );
});

Deno.test("frames sent with the upgrade answer, fragments and pings are handled", async () => {
  const fragments = concat(
    frame(0x1, "frag", false),
    frame(0x9, "are you there"), // a ping between fragments
    frame(0x0, "men", false),
    frame(0x0, "ted"),
    frame(0x2, new Uint8Array(300), false),
    frame(0x0, new Uint8Array(70_000)),
  );
  await withRawServer(
    async (conn, frames) => {
      const pong = await frames();
      assert.equal(pong.opcode, 0xa);
      assert.ok(pong.masked);
      assert.equal(new TextDecoder().decode(pong.payload), "are you there");
      const text = await frames();
      assert.deepEqual([text.opcode, text.fin, text.masked], [0x1, true, true]);
      assert.equal(new TextDecoder().decode(text.payload), "from the client");
      await conn.write(frame(0x8, new Uint8Array([0x03, 0xe8])));
      const close = await frames();
      assert.equal(close.opcode, 0x8);
      assert.deepEqual(close.payload, new Uint8Array([0x03, 0xe8]));
    },
    async (path) => {
      const ws = await open(path, "/");
      assert.deepEqual(await next(ws), { type: "text", data: "fragmented" });
      const big = await next(ws);
      assert.equal(big.type, "binary");
      assert.equal(big.data.length, 70_300);
      await ws.send("from the client");
      assert.equal(await ws.receive(), null);
      assert.equal((await ws.closed).code, 1000);
    },
    undefined,
    fragments,
  );
});

Deno.test("a message over the limit fails the socket with 1009", async () => {
  await withRawServer(async (conn, frames) => {
    // Two fragments, each under the limit, over it together.
    await conn.write(
      concat(frame(0x2, new Uint8Array(600), false), frame(0x0, new Uint8Array(600))),
    );
    const close = await frames();
    assert.equal(close.opcode, 0x8);
    assert.equal(new DataView(close.payload.buffer).getUint16(0), 1009);
  }, async (path) => {
    const ws = await open(path, "/", { maxMessageSize: 1000 });
    await assert.rejects(ws.receive(), /over the limit of 1000 bytes/);
    const info = await ws.closed;
    assert.equal(info.code, 1009);
    assert.ok(info.error instanceof WebSocketError);
  });
});

Deno.test("a frame length over the limit is refused before its payload is read", async () => {
  await withServer((socket) => {
    socket.onopen = () => socket.send(new Uint8Array(100_000));
  }, async (path) => {
    const ws = await open(path, "/", { maxMessageSize: 65_536 });
    await assert.rejects(ws.receive(), (e) => e instanceof WebSocketError && e.closeCode === 1009);
    assert.equal((await ws.closed).code, 1009);
  });
});

Deno.test("a protocol error (masked server frame) closes with 1002", async () => {
  await withRawServer(async (conn, frames) => {
    const masked = frame(0x1, "hi");
    masked[1] |= 0x80;
    await conn.write(concat(masked.subarray(0, 2), new Uint8Array(4), masked.subarray(2)));
    const close = await frames();
    assert.equal(new DataView(close.payload.buffer).getUint16(0), 1002);
  }, async (path) => {
    const ws = await open(path, "/");
    await assert.rejects(ws.receive(), /server masked a frame/);
    assert.equal((await ws.closed).code, 1002);
  });
});

Deno.test("a connection that ends without a close frame ends the stream with 1006", async () => {
  await withRawServer(async (conn) => {
    await conn.write(frame(0x1, "last"));
  }, async (path) => {
    const ws = await open(path, "/");
    assert.deepEqual(await next(ws), { type: "text", data: "last" });
    assert.equal(await ws.receive(), null);
    assert.equal((await ws.closed).code, 1006);
  });
});

Deno.test("close() gives up on a server that never answers", async () => {
  await withRawServer(async (_conn, frames) => {
    assert.equal((await frames()).opcode, 0x8);
    await frames().catch(() => {}); // wait for the client to drop the connection
  }, async (path) => {
    const ws = await open(path, "/");
    const started = Date.now();
    assert.equal((await ws.close()).code, 1006);
    assert.ok(Date.now() - started < 3000);
  });
});

Deno.test("connect() takes an opener and rejects an invalid path", async () => {
  await withServer(echo, async (path) => {
    const ws = await WebSocketClient.connect(
      () => Deno.connect({ transport: "unix", path }),
      { path: "/echo", host: "example" },
    );
    opened.push(ws);
    await ws.send("x");
    assert.deepEqual(await next(ws), { type: "text", data: "x" });
    await ws.close();
    const conn = await Deno.connect({ transport: "unix", path });
    await assert.rejects(WebSocketClient.connect(conn, { path: "/a\r\nX: y" }), TypeError);
    conn.close();
  });
});
