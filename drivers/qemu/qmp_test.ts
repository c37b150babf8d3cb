import assert from "node:assert/strict";
import { join } from "node:path";
import { QmpClient, QmpError, type QmpEvent } from "./qmp.ts";

/** A real QEMU with no machine, serving QMP on a socket in a fresh temp dir. */
async function startQemu(extra: string[] = []) {
  const dir = await Deno.makeTempDir({ prefix: "outpost-qmp-" });
  const sock = join(dir, "qmp.sock");
  const child = new Deno.Command("qemu-system-x86_64", {
    args: [
      "-machine",
      "none",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-qmp",
      `unix:${sock},server=on,wait=off`,
      ...extra,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const status = child.output();
  return {
    sock,
    status,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("connect() waits for the socket, reads the greeting and negotiates capabilities", async () => {
  await using q = await startQemu();
  const t0 = performance.now();
  const qmp = await QmpClient.connect(q.sock, { timeoutMs: 5000 });
  const ms = performance.now() - t0;
  try {
    assert.equal(typeof qmp.greeting?.QMP.version.qemu.major, "number");
    assert.ok(ms < 5000);
    // In command mode now: a real command works.
    const v = await qmp.execute<{ qemu: { major: number } }>("query-version");
    assert.equal(v.qemu.major, qmp.greeting?.QMP.version.qemu.major);
  } finally {
    qmp.close();
  }
});

Deno.test("query-status, then stop and cont with their STOP and RESUME events", async () => {
  await using q = await startQemu();
  const qmp = await QmpClient.connect(q.sock);
  try {
    const events: QmpEvent[] = [];
    const off = qmp.onEvent((e) => events.push(e));
    const s0 = await qmp.execute<{ running: boolean; status: string }>("query-status");
    assert.equal(s0.running, true);
    assert.equal(s0.status, "running");

    const stopped = qmp.waitEvent("STOP", { timeoutMs: 2000 });
    assert.deepEqual(await qmp.execute("stop"), {});
    const stop = await stopped;
    assert.equal(typeof stop.timestamp?.seconds, "number");
    assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "paused");

    const resumed = qmp.waitEvent("RESUME", { timeoutMs: 2000 });
    await qmp.execute("cont");
    await resumed;
    assert.equal((await qmp.execute<{ running: boolean }>("query-status")).running, true);
    off();
    assert.deepEqual(events.map((e) => e.event), ["STOP", "RESUME"]);
  } finally {
    qmp.close();
  }
});

Deno.test("an unknown command throws a QmpError carrying QMP's class and desc", async () => {
  await using q = await startQemu();
  const qmp = await QmpClient.connect(q.sock);
  try {
    await assert.rejects(qmp.execute("no-such-command"), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.errorClass, "CommandNotFound");
      assert.match(err.desc, /no-such-command/);
      assert.match(err.message, /^QMP command "no-such-command" failed: /);
      return true;
    });
    // A bad argument is an error too, and the connection stays usable.
    await assert.rejects(qmp.execute("query-status", { bogus: 1 }), QmpError);
    assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "running");
  } finally {
    qmp.close();
  }
});

Deno.test("concurrent commands on one connection each get their own reply", async () => {
  await using q = await startQemu(["-name", "multiplexed"]);
  const qmp = await QmpClient.connect(q.sock);
  try {
    const calls = Array.from(
      { length: 40 },
      (_, i) =>
        i % 2 === 0
          ? qmp.execute<{ name: string }>("query-name").then((r) => r.name)
          : qmp.execute<{ status: string }>("query-status").then((r) => r.status),
    );
    const results = await Promise.all(calls);
    results.forEach((r, i) => assert.equal(r, i % 2 === 0 ? "multiplexed" : "running"));
  } finally {
    qmp.close();
  }
});

Deno.test("a second client gets no greeting while the first holds the socket", async () => {
  await using q = await startQemu();
  const first = await QmpClient.connect(q.sock);
  try {
    await assert.rejects(
      QmpClient.connect(q.sock, { timeoutMs: 300 }),
      /did not greet .* another QMP client may hold it/,
    );
    // The first client is unaffected; once it closes, a new one connects.
    assert.equal((await first.execute<{ status: string }>("query-status")).status, "running");
  } finally {
    first.close();
  }
  await first.closed;
  const second = await QmpClient.connect(q.sock, { timeoutMs: 2000 });
  second.close();
});

Deno.test("quit() ends QEMU: closed settles, SHUTDOWN arrives, later commands reject", async () => {
  await using q = await startQemu();
  const qmp = await QmpClient.connect(q.sock);
  const shutdown = qmp.waitEvent("SHUTDOWN", { timeoutMs: 2000 });
  const t0 = performance.now();
  await qmp.quit();
  await qmp.closed;
  const ms = performance.now() - t0;
  assert.ok(ms < 2000, `quit took ${ms} ms`);
  assert.equal((await shutdown).event, "SHUTDOWN");
  assert.equal(qmp.isOpen, false);
  await assert.rejects(qmp.execute("query-status"), /QMP connection closed/);
  await assert.rejects(qmp.waitEvent("STOP"), /closed before event STOP/);
  assert.equal((await q.status).success, true);
});

Deno.test("a pending waitEvent rejects when QEMU goes away", async () => {
  await using q = await startQemu();
  const qmp = await QmpClient.connect(q.sock);
  const never = qmp.waitEvent("RESET");
  await qmp.execute("quit");
  await assert.rejects(never, /closed before event RESET/);
  await qmp.closed;
});

Deno.test("execute() with timeoutMs gives up on a missing reply", async () => {
  // A fake QMP server that greets, accepts capabilities, then never answers.
  const dir = await Deno.makeTempDir({ prefix: "outpost-qmp-" });
  const path = join(dir, "fake.sock");
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    const conn = await listener.accept();
    const enc = new TextEncoder();
    await conn.write(enc.encode(
      '{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}, "capabilities": []}}\n',
    ));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    const req = JSON.parse(new TextDecoder().decode(buf.subarray(0, n!)));
    await conn.write(enc.encode(JSON.stringify({ return: {}, id: req.id }) + "\n"));
    while (await conn.read(buf) !== null) { /* swallow */ }
    conn.close();
  })();
  try {
    const qmp = await QmpClient.connect(path);
    await assert.rejects(
      qmp.execute("query-status", undefined, { timeoutMs: 100 }),
      /got no reply within 100 ms/,
    );
    qmp.close();
    await qmp.closed;
    await served;
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connect() to a socket that never appears fails after the timeout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-qmp-" });
  try {
    const t0 = performance.now();
    await assert.rejects(
      QmpClient.connect(join(dir, "none.sock"), { timeoutMs: 150 }),
      /is not accepting connections/,
    );
    const ms = performance.now() - t0;
    assert.ok(ms >= 140 && ms < 1500, `gave up after ${ms} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
