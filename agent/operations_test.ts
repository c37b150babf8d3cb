import assert from "node:assert/strict";
import { join } from "node:path";
import { BadRequest, NotFound } from "./errors.ts";
import { EventBus, type OutpostEvent } from "./events.ts";
import { type OperationBody, type OperationContext, Operations } from "./operations.ts";
import { Store } from "./store.ts";

/** A promise with its resolve function, to hold an operation in the running state. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => open = r);
  return { promise, open };
}

/** Operations wired to a fresh bus, with every operation event's body recorded in order. */
function setup(): { ops: Operations; events: OperationBody[]; logs: string[] } {
  const bus = new EventBus();
  const events: OperationBody[] = [];
  const logs: string[] = [];
  bus.subscribe(["operation"], (e: OutpostEvent) => events.push(e.metadata as OperationBody));
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
      const stored = store.listOperations() as OperationBody[];
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
