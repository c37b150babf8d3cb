/** The tunnel's streams: requests and bodies both ways, flow control, websockets, violations. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Hono } from "hono";
import { Tunnel, type TunnelCarrier } from "./tunnel.ts";
import { relayRequest, serveStream } from "./tunnel_http.ts";
import { type Connection, connectionOf, UNIX_CONNECTION } from "./connection.ts";
import { encodeFrame, Frame, MAX_STREAMS, STREAM_WINDOW } from "../contract/tunnel.ts";

/** A hub end and an agent end joined in memory; frames cross on the next task, as on a socket. */
function pair(app: Hono) {
  const ends: { hub?: Tunnel; agent?: Tunnel } = {};
  const carrier = (other: () => Tunnel): TunnelCarrier & { closed: boolean; bytes: number } => {
    const c = {
      closed: false,
      bytes: 0,
      send(data: Uint8Array | string) {
        if (c.closed) throw new Error("closed");
        c.bytes += typeof data === "string" ? data.length : data.byteLength;
        setTimeout(() => other().receive(data), 0);
      },
      close() {
        c.closed = true;
      },
    };
    return c;
  };
  const toAgent = carrier(() => ends.agent!);
  const toHub = carrier(() => ends.hub!);
  const hub = ends.hub = new Tunnel(toAgent);
  const agent = ends.agent = new Tunnel(toHub, {
    onStream: (stream, head) =>
      void serveStream(stream, head, {
        fetch: (req, env) => app.fetch(req, env),
        caller: { via: "unix" },
        log: () => {},
      }),
  });
  return { hub, agent, toAgent, toHub };
}

function testApp(): Hono {
  const app = new Hono();
  app.get("/1.0", (c) => c.json({ path: c.req.path, query: c.req.query("x") }));
  app.post("/sha", async (c) => {
    const body = new Uint8Array(await c.req.arrayBuffer());
    return c.text(createHash("sha256").update(body).digest("hex"));
  });
  app.get("/big", () => {
    let left = 4 * 2 ** 20;
    return new Response(
      new ReadableStream({
        pull(ctl) {
          if (left <= 0) return ctl.close();
          const n = Math.min(left, 100_000);
          left -= n;
          ctl.enqueue(new Uint8Array(n).fill(7));
        },
      }),
    );
  });
  app.get("/ws", (c) => {
    const { socket, response } = connectionOf(c).upgradeWebSocket(c.req.raw);
    socket.onmessage = (e) => socket.send(`echo:${e.data}`);
    return response;
  });
  app.get("/hang", () => new Promise<Response>(() => {}));
  // A raw upgrade (as SFTP's): whatever comes in goes back out, until the client ends.
  app.get("/raw", (c) => {
    const { response, stream } = connectionOf(c).upgradeRaw!(c.req.raw, "echo");
    void stream.then((raw) => raw.readable.pipeTo(raw.writable));
    return response;
  });
  return app;
}

const CLIENT: Connection = UNIX_CONNECTION;

Deno.test("a request and its answer cross the tunnel, path and query kept", async () => {
  const { hub } = pair(testApp());
  const resp = await relayRequest(hub, new Request("http://hub/x"), "/1.0?x=1", CLIENT);
  assert.equal(resp.status, 200);
  assert.deepEqual(await resp.json(), { path: "/1.0", query: "1" });
  assert.equal(hub.streams, 0);
  hub.close();
});

Deno.test("bodies of several MiB cross both ways intact, within the stream's window", async () => {
  const { hub, toAgent, toHub } = pair(testApp());
  const body = crypto.getRandomValues(new Uint8Array(60_000));
  const big = new Uint8Array(3 * 2 ** 20);
  for (let i = 0; i < big.length; i += body.length) big.set(body.subarray(0, big.length - i), i);
  const resp = await relayRequest(
    hub,
    new Request("http://hub/sha", { method: "POST", body: big }),
    "/sha",
    CLIENT,
  );
  assert.equal(await resp.text(), createHash("sha256").update(big).digest("hex"));
  assert.ok(toAgent.bytes > big.length);

  // A reader that does not read holds the sender at the window: nothing piles up.
  const slow = await relayRequest(hub, new Request("http://hub/big"), "/big", CLIENT);
  const before = toHub.bytes;
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(toHub.bytes - before <= STREAM_WINDOW + 1024, `${toHub.bytes - before} bytes sent`);
  let total = 0;
  for await (const chunk of slow.body!) total += chunk.byteLength;
  assert.equal(total, 4 * 2 ** 20);
  hub.close();
});

Deno.test("a websocket upgrade on the agent carries messages through the stream", async () => {
  const { hub } = pair(testApp());
  const stream = hub.open({ method: "GET", path: "/ws", headers: [["upgrade", "websocket"]] });
  stream.end();
  const head = await stream.response;
  assert.equal(head.status, 101);
  const got: (string | Uint8Array)[] = [];
  const closed = Promise.withResolvers<number>();
  stream.onWebSocket({ message: (d) => got.push(d), close: (code) => closed.resolve(code) });
  stream.sendWebSocket("hello");
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, ["echo:hello"]);
  stream.closeWebSocket(1000, "bye");
  assert.equal(hub.streams, 0);
  hub.close();
});

Deno.test("a client that leaves resets its stream; closing the tunnel fails what is open", async () => {
  const { hub, agent } = pair(testApp());
  const resp = await relayRequest(hub, new Request("http://hub/big"), "/big", CLIENT);
  await resp.body!.cancel();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(hub.streams, 0);
  assert.equal(agent.streams, 0);
  const hanging = relayRequest(hub, new Request("http://hub/hang"), "/hang", CLIENT);
  await new Promise((r) => setTimeout(r, 20));
  hub.close("gone");
  assert.equal((await hanging).status, 502);
});

Deno.test("at most MAX_STREAMS requests are in flight; more get a 503", async () => {
  const { hub } = pair(testApp());
  const hanging = [];
  for (let i = 0; i < MAX_STREAMS; i++) {
    hanging.push(relayRequest(hub, new Request("http://hub/hang"), "/hang", CLIENT));
  }
  const over = await relayRequest(hub, new Request("http://hub/1.0"), "/1.0", CLIENT);
  assert.equal(over.status, 503);
  hub.close();
  await Promise.all(hanging);
});

Deno.test("a peer that breaks the protocol loses the tunnel", () => {
  for (
    const bad of [
      new Uint8Array([1, 2]), // too short
      encodeFrame(42 as never, 1), // unknown type
      encodeFrame(Frame.REQUEST, 1, new TextEncoder().encode("{")), // the hub opens none
    ]
  ) {
    const reasons: string[] = [];
    const t = new Tunnel({ send() {}, close() {} }, { onClose: (r) => reasons.push(r) });
    t.receive(bad);
    assert.ok(t.closed, String(bad));
    assert.equal(reasons.length, 1);
  }
  // A stream's window overrun (data the reader was never given room for) closes it too.
  const t = new Tunnel({ send() {}, close() {} });
  const s = t.open({ method: "GET", path: "/", headers: [] });
  t.receive(
    encodeFrame(Frame.RESPONSE, s.id, new TextEncoder().encode('{"status":200,"headers":[]}')),
  );
  for (let i = 0; i < 6 && !t.closed; i++) {
    t.receive(encodeFrame(Frame.DATA, s.id, new Uint8Array(64 * 1024)));
  }
  assert.ok(t.closed);
});

Deno.test("a raw upgrade (SFTP's) relays bytes both ways until the client ends", async () => {
  const { hub } = pair(testApp());
  // The client's connection at the hub: what it sends, and what it receives.
  const sent = new TransformStream<Uint8Array, Uint8Array>();
  const received: Uint8Array[] = [];
  const done = Promise.withResolvers<void>();
  const client: Connection = {
    caller: { via: "unix" },
    upgradeWebSocket: () => {
      throw new Error("no websockets here");
    },
    upgradeRaw: () => ({
      response: new Response(null, { status: 101 }),
      stream: Promise.resolve({
        readable: sent.readable,
        writable: new WritableStream<Uint8Array>({
          write: (chunk) => void received.push(chunk),
          close: () => done.resolve(),
        }),
      }),
    }),
  };
  const req = new Request("http://hub/raw", {
    headers: { upgrade: "echo", connection: "upgrade" },
  });
  const resp = await relayRequest(hub, req, "/raw", client);
  assert.equal(resp.status, 101);
  const w = sent.writable.getWriter();
  const payload = new Uint8Array(300_000);
  for (let i = 0; i < payload.length; i += 65_536) {
    crypto.getRandomValues(payload.subarray(i, i + 65_536));
  }
  await w.write(payload);
  await w.close();
  await done.promise;
  const back = new Uint8Array(received.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of received) {
    back.set(c, at);
    at += c.byteLength;
  }
  assert.deepEqual(back, payload);
  hub.close();
});

Deno.test("a control message on a connection that went away ends the tunnel, and throws nothing", () => {
  const reasons: string[] = [];
  const t = new Tunnel({
    send() {
      throw new DOMException("The websocket is not open", "InvalidStateError");
    },
    close() {},
  }, { onClose: (r) => reasons.push(r) });
  t.control({ type: "heartbeat" });
  assert.ok(t.closed);
  assert.match(reasons[0], /The tunnel failed: The websocket is not open/);
  t.control({ type: "heartbeat" }); // closed: a no-op
});
