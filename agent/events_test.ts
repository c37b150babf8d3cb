import assert from "node:assert/strict";
import type { LoggingEvent, OutpostEvent } from "../contract/events.ts";
import type { Operation } from "../contract/responses.ts";
import { EventBus, type EventSink, SLOW_SUBSCRIBER_CODE } from "./events.ts";

/** A logging event's metadata carrying `message`. */
function note(message: string): LoggingEvent {
  return { message, level: "info", context: {} };
}

/** A sink that writes nothing out until told to: what it was sent stays "buffered". */
class StuckSink implements EventSink {
  readyState = 1;
  bufferedAmount = 0;
  sent: string[] = [];
  closed?: { code: number; reason: string };

  send(data: string): void {
    this.sent.push(data);
    this.bufferedAmount += data.length;
  }

  close(code: number, reason: string): void {
    this.closed = { code, reason };
    this.readyState = 2;
  }

  /** The peer reads everything sent so far. */
  drain(): void {
    this.bufferedAmount = 0;
  }
}

Deno.test("emit() reaches the subscribers of its type only, in the Incus event shape", () => {
  const bus = new EventBus();
  const ops: OutpostEvent[] = [];
  const all: OutpostEvent[] = [];
  bus.subscribe(["operation"], (e) => ops.push(e));
  bus.subscribe(["operation", "lifecycle", "logging"], (e) => all.push(e));
  const op: Operation = {
    id: "1",
    class: "task",
    description: "Starting instance",
    created_at: "2024-01-01T00:00:00Z",
    updated_at: "2024-01-01T00:00:00Z",
    status: "Running",
    status_code: 103,
    resources: null,
    metadata: null,
    may_cancel: false,
    err: "",
    location: "none",
  };
  bus.emit("operation", op);
  bus.lifecycle("instance-started", "/1.0/instances/c1", { a: 1 });
  assert.deepEqual(ops.map((e) => e.metadata), [op]);
  assert.deepEqual(all.map((e) => e.type), ["operation", "lifecycle"]);
  assert.deepEqual(all[1].metadata, {
    action: "instance-started",
    source: "/1.0/instances/c1",
    context: { a: 1 },
    requestor: null,
  });
  assert.equal(all[1].location, "none");
  assert.equal(all[1].project, "default");
  assert.ok(!Number.isNaN(Date.parse(all[1].timestamp)));
});

Deno.test("a listener that throws does not stop the others, and unsubscribing ends delivery", () => {
  const bus = new EventBus();
  const got: unknown[] = [];
  bus.subscribe(["logging"], () => {
    throw new Error("closed socket");
  });
  const unsubscribe = bus.subscribe(["logging"], (e) => got.push(e.metadata));
  bus.emit("logging", note("1"));
  unsubscribe();
  bus.emit("logging", note("2"));
  assert.deepEqual(got, [note("1")]);
  assert.equal(bus.size, 1);
});

Deno.test("subscribeSink() sends each event as JSON text while the sink keeps up", () => {
  const bus = new EventBus();
  const sink = new StuckSink();
  bus.subscribeSink(["logging"], sink, { maxBufferedBytes: 1000, log: () => {} });
  for (let i = 0; i < 100; i++) {
    bus.emit("logging", note(`${i}`));
    sink.drain();
  }
  bus.lifecycle("instance-started", "/1.0/instances/c1");
  assert.equal(sink.sent.length, 100);
  assert.deepEqual(JSON.parse(sink.sent[99]).metadata, note("99"));
  assert.equal(JSON.parse(sink.sent[0]).type, "logging");
  assert.equal(sink.closed, undefined);
});

Deno.test("a sink that stops reading is dropped at the byte limit, with a logged reason", () => {
  const bus = new EventBus();
  const logs: string[] = [];
  const stuck = new StuckSink();
  const reader = new StuckSink();
  bus.subscribeSink(["logging"], stuck, {
    maxBufferedBytes: 10_000,
    label: "#7",
    log: (m) => logs.push(m),
  });
  bus.subscribeSink(["logging"], reader, { maxBufferedBytes: 10_000, log: (m) => logs.push(m) });
  const padding = "x".repeat(900);
  for (let i = 0; i < 1000; i++) {
    bus.emit("logging", note(`${i} ${padding}`));
    reader.drain();
  }
  // Never more than the limit waited unsent, and the stuck sink got no event after the drop.
  assert.ok(stuck.bufferedAmount <= 10_000, `${stuck.bufferedAmount} bytes were buffered`);
  assert.ok(stuck.sent.length < 12, `${stuck.sent.length} events were sent`);
  assert.equal(stuck.closed?.code, SLOW_SUBSCRIBER_CODE);
  assert.match(stuck.closed?.reason ?? "", /^Too slow/);
  assert.ok(new TextEncoder().encode(stuck.closed?.reason).length <= 123);
  assert.equal(logs.length, 1);
  assert.match(logs[0], /^events: dropping slow subscriber \(#7: \d+ bytes unsent/);
  // The reader that kept up got everything and stays subscribed.
  assert.equal(reader.sent.length, 1000);
  assert.equal(reader.closed, undefined);
  assert.equal(bus.size, 1);
});

Deno.test("a sink that stops reading is dropped at the event limit, however small the events", () => {
  const bus = new EventBus();
  const logs: string[] = [];
  const stuck = new StuckSink();
  bus.subscribeSink(["logging"], stuck, { maxBufferedEvents: 50, log: (m) => logs.push(m) });
  for (let i = 0; i < 1000; i++) bus.emit("logging", note(`${i}`));
  assert.equal(stuck.sent.length, 50);
  assert.equal(stuck.closed?.code, SLOW_SUBSCRIBER_CODE);
  assert.match(logs[0], /^events: dropping slow subscriber \(websocket: 50 events unsent/);
  assert.equal(bus.size, 0);
});

Deno.test("a sink that catches up is never dropped, and one large event reaches an idle sink", () => {
  const bus = new EventBus();
  const sink = new StuckSink();
  bus.subscribeSink(["logging"], sink, {
    maxBufferedBytes: 1000,
    maxBufferedEvents: 5,
    log: () => {},
  });
  bus.emit("logging", note("x".repeat(5000)));
  sink.drain();
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 5; i++) bus.emit("logging", note(`${i}`));
    sink.drain();
  }
  assert.equal(sink.sent.length, 251);
  assert.equal(sink.closed, undefined);
});

Deno.test("nothing is sent to a sink that is closing", () => {
  const bus = new EventBus();
  const sink = new StuckSink();
  bus.subscribeSink(["logging"], sink);
  sink.readyState = 2;
  bus.emit("logging", note("1"));
  assert.deepEqual(sink.sent, []);
});

Deno.test("close() closes every sink subscriber and leaves plain listeners", () => {
  const bus = new EventBus();
  const a = new StuckSink();
  const b = new StuckSink();
  bus.subscribeSink(["logging"], a);
  bus.subscribeSink(["lifecycle"], b);
  bus.subscribe(["operation"], () => {});
  bus.close();
  assert.deepEqual(a.closed, { code: 1000, reason: "The daemon is stopping" });
  assert.deepEqual(b.closed, { code: 1000, reason: "The daemon is stopping" });
  assert.equal(bus.size, 1);
});

/** A real websocket pair on a unix socket; the client end never reads. */
Deno.test("a real websocket whose peer never reads is dropped near the limit", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-events-" });
  const path = `${dir}/events.sock`;
  const bus = new EventBus();
  const logs: string[] = [];
  const opened = Promise.withResolvers<WebSocket>();
  const closed = Promise.withResolvers<void>();
  const server = Deno.serve({ path, transport: "unix", onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    socket.onopen = () => opened.resolve(socket);
    socket.onclose = () => closed.resolve();
    return response;
  });
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(
      new TextEncoder().encode(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    const socket = await opened.promise;
    bus.subscribeSink(["logging"], socket, {
      maxBufferedBytes: 2 ** 20,
      log: (m) => logs.push(m),
    });
    let most = 0;
    const padding = "x".repeat(10_000);
    for (let i = 0; i < 2000 && bus.size > 0; i++) {
      bus.emit("logging", note(`${i} ${padding}`));
      most = Math.max(most, socket.bufferedAmount);
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(bus.size, 0, "the subscriber should have been dropped");
    assert.ok(most <= 2 ** 20 + 20_000, `${most} bytes were buffered`);
    assert.match(logs[0], /^events: dropping slow subscriber/);
  } finally {
    conn.close();
    await closed.promise;
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
