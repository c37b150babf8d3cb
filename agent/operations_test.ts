import assert from "node:assert/strict";
import { join } from "node:path";
import { BadRequest, InvalidState, NotFound } from "../contract/errors.ts";
import type { OutpostEvent } from "../contract/events.ts";
import type { Operation } from "../contract/responses.ts";
import { EventBus } from "./events.ts";
import { INTERRUPTED, type OperationContext, Operations } from "./operations.ts";
import { Store } from "./store.ts";

/** A promise with its resolve function, to hold an operation in the running state. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => open = r);
  return { promise, open };
}

/** Operations wired to a fresh bus, with every operation event's body recorded in order. */
function setup(): { ops: Operations; events: Operation[]; logs: string[] } {
  const bus = new EventBus();
  const events: Operation[] = [];
  const logs: string[] = [];
  bus.subscribe(["operation"], (e: OutpostEvent) => events.push(e.metadata as Operation));
  return { ops: new Operations(bus, undefined, (m) => logs.push(m)), events, logs };
}

Deno.test({
  name: "start() returns a running task operation at once",
  async fn() {
    const { ops } = setup();
    const g = gate();
    const op = ops.start({
      description: "Creating instance",
      resources: { instances: ["/1.0/instances/c1"] },
      run: () => g.promise,
    });
    assert.equal(op.status, "Running");
    assert.equal(op.status_code, 103);
    assert.equal(op.class, "task");
    assert.equal(op.description, "Creating instance");
    assert.equal(op.may_cancel, false);
    assert.equal(op.err, "");
    assert.deepEqual(op.resources, { instances: ["/1.0/instances/c1"] });
    assert.match(op.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(ops.list().map((o) => o.id), [op.id]);
    assert.equal(ops.get(op.id).status, "Running");
    g.open();
    await ops.wait(op.id);
  },
});

Deno.test({
  name: "wait() returns success with the result merged into the metadata",
  async fn() {
    const { ops } = setup();
    const op = ops.start({
      description: "Uploading image",
      metadata: { a: 1, b: 1 },
      run: async (ctx) => {
        ctx.update({ progress: "50%" });
        await Promise.resolve();
        return { b: 2, fingerprint: "abc" };
      },
    });
    const done = await ops.wait(op.id);
    assert.equal(done.status, "Success");
    assert.equal(done.status_code, 200);
    assert.equal(done.err, "");
    assert.deepEqual(done.metadata, { a: 1, b: 2, progress: "50%", fingerprint: "abc" });
    assert.deepEqual(ops.get(op.id), done);
  },
});

Deno.test({
  name: "wait() on an operation that returns nothing keeps its metadata",
  async fn() {
    const { ops } = setup();
    const op = ops.start({ description: "x", run: async () => {} });
    const done = await ops.wait(op.id);
    assert.equal(done.status_code, 200);
    assert.equal(done.metadata, null);
  },
});

Deno.test({
  name: "a failing operation ends with status 400 and the error message",
  async fn() {
    const { ops, logs } = setup();
    const op = ops.start({
      description: "Starting instance",
      run: () => Promise.reject(new Error('Instance "c1" failed to start')),
    });
    const done = await ops.wait(op.id);
    assert.equal(done.status, "Failure");
    assert.equal(done.status_code, 400);
    assert.equal(done.err, 'Instance "c1" failed to start');
    assert.ok(logs.some((l) => l.includes(op.id) && l.includes("Failure")));
  },
});

Deno.test({
  name: "a synchronous throw in run() is a failure too",
  async fn() {
    const { ops } = setup();
    const op = ops.start({
      description: "x",
      run: () => {
        throw new Error("boom");
      },
    });
    const done = await ops.wait(op.id);
    assert.equal(done.status_code, 400);
    assert.equal(done.err, "boom");
  },
});

Deno.test("operation events are emitted in order: running, updates, then success", async () => {
  const { ops, events } = setup();
  const op = ops.start({
    description: "x",
    run: (ctx) => {
      ctx.update({ step: 1 });
      ctx.update({ step: 2 });
      return Promise.resolve({ done: true });
    },
  });
  // The work starts after start() returns, so no update or result is out yet.
  assert.equal(events.at(-1)?.status, "Running");
  assert.ok(events.every((e) => e.status_code < 200));
  await ops.wait(op.id);
  // An "Operation created" event before the first Running one is allowed, not required.
  const fromRunning = events.slice(events.findIndex((e) => e.status_code === 103));
  assert.deepEqual(fromRunning.map((e) => [e.status, e.metadata]), [
    ["Running", null],
    ["Running", { step: 1 }],
    ["Running", { step: 2 }],
    ["Success", { step: 2, done: true }],
  ]);
  assert.ok(events.every((e) => e.id === op.id));
  const codes = events.map((e) => e.status_code);
  assert.deepEqual(codes, [...codes].sort((a, b) => a - b));
});

Deno.test({
  name: "wait() with a timeout returns while the operation still runs",
  async fn() {
    const { ops } = setup();
    const g = gate();
    const op = ops.start({ description: "x", run: () => g.promise });
    const started = performance.now();
    const body = await ops.wait(op.id, 0.05);
    assert.ok(performance.now() - started < 2000);
    assert.equal(body.status, "Running");
    assert.equal(body.status_code, 103);
    g.open();
    assert.equal((await ops.wait(op.id, 5)).status_code, 200);
  },
});

Deno.test({
  name: "wait() on a finished operation returns at once",
  async fn() {
    const { ops } = setup();
    const op = ops.start({ description: "x", run: async () => {} });
    await ops.wait(op.id);
    assert.equal((await ops.wait(op.id, 0)).status_code, 200);
  },
});

Deno.test({
  name: "cancel() refuses an operation that cannot be cancelled",
  async fn() {
    const { ops } = setup();
    const g = gate();
    const op = ops.start({ description: "x", run: () => g.promise });
    assert.throws(
      () => ops.cancel(op.id),
      (err: unknown) =>
        err instanceof BadRequest && err.message === `Operation "${op.id}" cannot be cancelled`,
    );
    assert.equal(ops.get(op.id).status_code, 103);
    g.open();
    assert.equal((await ops.wait(op.id)).status_code, 200);
  },
});

Deno.test({
  name: "cancel() aborts a cancellable operation's signal and ends it with status 401",
  async fn() {
    const { ops, events } = setup();
    let ctx!: OperationContext;
    const op = ops.start({
      description: "Exec",
      mayCancel: true,
      run: (c) => {
        ctx = c;
        return new Promise((_, reject) =>
          c.signal.addEventListener("abort", () => reject(new Error("aborted")))
        );
      },
    });
    await Promise.resolve(); // let run() begin
    assert.equal(ctx.signal.aborted, false);
    const body = ops.cancel(op.id);
    assert.equal(ctx.signal.aborted, true);
    assert.equal(body.status, "Cancelled");
    assert.equal(body.status_code, 401);
    assert.equal(body.err, "Operation cancelled");
    // The run()'s rejection afterwards does not turn the cancel into a failure.
    const done = await ops.wait(op.id);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(ops.get(op.id).status_code, 401);
    assert.equal(done.status_code, 401);
    assert.equal(events.at(-1)?.status_code, 401);
    // Cancelling a finished operation answers its body instead of refusing.
    assert.equal(ops.cancel(op.id).status_code, 401);
  },
});

Deno.test("an unknown operation id is NotFound for get, wait and cancel", async () => {
  const { ops } = setup();
  const named = (err: unknown) =>
    err instanceof NotFound && err.message === 'Operation "nope" not found';
  assert.throws(() => ops.get("nope"), named);
  assert.throws(() => ops.cancel("nope"), named);
  await assert.rejects(() => ops.wait("nope"), named);
  assert.deepEqual(ops.list(), []);
});

Deno.test({
  name: "operations are persisted to the store as they change",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "outpost-ops-" });
    const store = new Store(join(dir, "outpost.db"));
    try {
      const ops = new Operations(new EventBus(), store, () => {});
      const op = ops.start({ description: "x", run: () => Promise.resolve({ n: 1 }) });
      await ops.wait(op.id);
      const stored = store.listOperations() as Operation[];
      assert.equal(stored.length, 1);
      assert.equal(stored[0].id, op.id);
      assert.equal(stored[0].status_code, 200);
      assert.deepEqual(stored[0].metadata, { n: 1 });
    } finally {
      store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs `fn` with a Store on a fresh temp database, closed and removed afterwards. */
async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-ops-" });
  const store = new Store(join(dir, "outpost.db"));
  try {
    await fn(store);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ids = (bodies: unknown[]) => bodies.map((b) => (b as Operation).id);

Deno.test("finished operations are forgotten after the retention time, in memory and stored", () =>
  withStore(async (store) => {
    const ops = new Operations(new EventBus(), store, () => {}, { retentionMs: 50 });
    try {
      const g = gate();
      const long = ops.start({ description: "long", run: () => g.promise });
      const op = ops.start({ description: "short", run: async () => {} });
      await ops.wait(op.id);
      assert.equal(ops.get(op.id).status_code, 200);
      assert.deepEqual(ids(store.listOperations()).sort(), [long.id, op.id].sort());
      await sleep(200);
      assert.throws(() => ops.get(op.id), NotFound);
      // A running operation is never pruned, however long it runs.
      assert.deepEqual(ops.list().map((o) => o.id), [long.id]);
      assert.deepEqual(ids(store.listOperations()), [long.id]);
      g.open();
      await ops.wait(long.id);
      await sleep(200);
      assert.deepEqual(ops.list(), []);
      assert.deepEqual(store.listOperations(), []);
    } finally {
      ops.close();
    }
  }));

Deno.test("at most maxFinished finished operations are kept, the newest", () =>
  withStore(async (store) => {
    const ops = new Operations(new EventBus(), store, () => {}, { maxFinished: 5 });
    try {
      const started: string[] = [];
      for (let i = 0; i < 12; i++) {
        const op = ops.start({ description: `op ${i}`, run: async () => {} });
        started.push(op.id);
        await ops.wait(op.id);
      }
      assert.deepEqual(ops.list().map((o) => o.id), started.slice(-5));
      assert.deepEqual(ids(store.listOperations()), started.slice(-5));
      assert.throws(() => ops.get(started[0]), NotFound);
    } finally {
      ops.close();
    }
  }));

Deno.test("finished operations are kept within a byte budget, the newest always", () =>
  withStore(async (store) => {
    const ops = new Operations(new EventBus(), store, () => {}, { maxFinishedBytes: 5000 });
    try {
      const big = "x".repeat(2000);
      const started: string[] = [];
      for (let i = 0; i < 5; i++) {
        const op = ops.start({ description: "big", metadata: { big }, run: async () => {} });
        started.push(op.id);
        await ops.wait(op.id);
      }
      assert.deepEqual(ops.list().map((o) => o.id), started.slice(-2));
      assert.deepEqual(ids(store.listOperations()), started.slice(-2));
      const huge = ops.start({
        description: "huge",
        metadata: { huge: big.repeat(5) },
        run: async () => {},
      });
      await ops.wait(huge.id);
      assert.deepEqual(ops.list().map((o) => o.id), [huge.id]);
      assert.deepEqual(ids(store.listOperations()), [huge.id]);
    } finally {
      ops.close();
    }
  }));

Deno.test("start() refuses an operation beyond maxRunning until one finishes", async () => {
  const ops = new Operations(new EventBus(), undefined, () => {}, { maxRunning: 2 });
  try {
    const gates = [gate(), gate()];
    const running = gates.map((g) => ops.start({ description: "x", run: () => g.promise }));
    assert.throws(
      () => ops.start({ description: "x", run: async () => {} }),
      (err: unknown) =>
        err instanceof InvalidState &&
        err.message === "Too many operations running (2): wait for some to finish",
    );
    gates[0].open();
    await ops.wait(running[0].id);
    const next = ops.start({ description: "x", run: async () => {} });
    assert.equal((await ops.wait(next.id)).status_code, 200);
    gates[1].open();
    await ops.wait(running[1].id);
  } finally {
    ops.close();
  }
});

Deno.test("a finished operation ignores later updates and refuses websockets", async () => {
  const { ops, events } = setup();
  try {
    let ctx!: OperationContext;
    let connects = 0;
    const op = ops.start({
      description: "Exec",
      class: "websocket",
      mayCancel: true,
      websocket: () => {
        connects++;
        return new Response(null);
      },
      run: (c) => {
        ctx = c;
        return new Promise(() => {}); // never settles by itself
      },
    });
    await Promise.resolve();
    assert.ok(
      ops.connect(op.id, "s", () => ({ socket: {} as WebSocket, response: new Response() })),
    );
    ops.cancel(op.id);
    const count = events.length;
    ctx.update({ late: true });
    assert.equal(events.length, count);
    assert.equal(ops.get(op.id).metadata, null);
    assert.throws(
      () => ops.connect(op.id, "s", () => ({ socket: {} as WebSocket, response: new Response() })),
      BadRequest,
    );
    assert.equal(connects, 1);
  } finally {
    ops.close();
  }
});

Deno.test("recoverInterrupted() marks operations a stopped daemon left running as failed", () =>
  withStore(async (store) => {
    // A previous daemon: one operation finished, two still going when it was killed.
    const before = new Operations(new EventBus(), store, () => {});
    const g = gate();
    const done = before.start({ description: "Finished", run: async () => {} });
    await before.wait(done.id);
    const running = before.start({ description: "Creating instance", run: () => g.promise });
    store.putOperation(
      "created-1",
      { ...running, id: "created-1", status: "Operation created", status_code: 100 },
      running.updated_at,
    );
    before.close();

    const logs: string[] = [];
    const after = new Operations(new EventBus(), store, (m) => logs.push(m));
    try {
      const recovered = after.recoverInterrupted();
      assert.deepEqual(ids(recovered).sort(), [running.id, "created-1"].sort());
      for (const id of [running.id, "created-1"]) {
        const body = after.get(id);
        assert.equal(body.status, "Failure");
        assert.equal(body.status_code, 400);
        assert.equal(body.err, INTERRUPTED);
        assert.equal(body.may_cancel, false);
        assert.equal((await after.wait(id, 0)).status_code, 400);
      }
      assert.equal(after.get(running.id).description, "Creating instance");
      assert.deepEqual(after.get(running.id).resources, running.resources);
      const stored = store.listOperations() as Operation[];
      assert.equal(stored.length, 3);
      assert.ok(stored.every((o) => o.status_code >= 200), JSON.stringify(stored));
      assert.equal(stored.find((o) => o.id === running.id)?.err, INTERRUPTED);
      assert.ok(logs.some((l) => l.includes("2 operation(s) interrupted")), logs.join("\n"));
      // A second call (or a later start-up) finds nothing left to recover.
      assert.deepEqual(after.recoverInterrupted(), []);
      const fresh = after.start({ description: "new", run: async () => {} });
      assert.equal((await after.wait(fresh.id)).status_code, 200);
    } finally {
      after.close();
      g.open();
    }
  }));

Deno.test("wait() with a timeout too long for a timer waits for the end", async () => {
  const { ops } = setup();
  const g = gate();
  const op = ops.start({ description: "x", run: () => g.promise });
  let returned = false;
  const waiting = ops.wait(op.id, 1e10).then((b) => {
    returned = true;
    return b;
  });
  await sleep(50);
  assert.equal(returned, false);
  g.open();
  assert.equal((await waiting).status_code, 200);
  ops.close();
});
