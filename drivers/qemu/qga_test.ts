/**
 * Protocol tests of the guest-agent client against a fake agent on a unix socket: it speaks
 * qemu-ga's line protocol (0xFF sync sentinel included), runs guest-exec commands on the host and
 * serves guest-file-* from the host's files. The test against a real guest comes with the driver.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { QgaClient, QgaError, QgaTimeoutError } from "./qga.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Proc {
  child: Deno.ChildProcess;
  done?: Deno.CommandOutput;
}

/** A stand-in for qemu-ga behind QEMU's chardev: one client at a time, one request at a time. */
class FakeAgent {
  listener: Deno.UnixListener | undefined;
  conn: Deno.UnixConn | undefined;
  procs = new Map<number, Proc>();
  files = new Map<number, Deno.FsFile>();
  nextHandle = 1000;
  requests: string[] = [];
  /** Echo the request id in replies (qemu-ga does; the client must cope without it too). */
  echoId = true;
  /** Commands to answer late, by how many ms. */
  delays = new Map<string, number>();
  /** Data the agent sends first on each new connection (a previous client's leftovers). */
  stale = '{"return": 424242}\n{"return": {"half';
  #serving: Promise<void> | undefined;

  constructor(readonly path: string) {}

  start() {
    this.listener = Deno.listen({ transport: "unix", path: this.path });
    this.#serving = this.#serve(this.listener);
  }

  /** QEMU going away: the socket closes and disappears. */
  async stop() {
    this.listener?.close();
    this.conn?.close();
    this.conn = undefined;
    await this.#serving;
    await Deno.remove(this.path).catch(() => {});
  }

  async dispose() {
    await this.stop();
    for (const p of this.procs.values()) {
      try {
        p.child.kill("SIGKILL");
      } catch {
        // exited
      }
      await p.child.status;
    }
    for (const f of this.files.values()) f.close();
  }

  async #serve(listener: Deno.UnixListener) {
    for (;;) {
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      this.conn = conn;
      await this.#session(conn).catch(() => {});
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  }

  async #session(conn: Deno.UnixConn) {
    if (this.stale) await writeAll(conn, enc.encode(this.stale));
    const buf = new Uint8Array(1 << 20);
    let pending: number[] = [];
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      for (let i = 0; i < n; i++) {
        const b = buf[i];
        if (b === 0xff) {
          // qemu-ga's parser resets on the invalid byte, and complains about what it dropped.
          pending = [];
          await writeAll(
            conn,
            enc.encode('{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n'),
          );
        } else if (b === 0x0a) {
          const line = dec.decode(new Uint8Array(pending)).trim();
          pending = [];
          if (line) await this.#handle(conn, line);
        } else pending.push(b);
      }
    }
  }

  async #handle(conn: Deno.UnixConn, line: string) {
    const req = JSON.parse(line);
    this.requests.push(req.execute);
    const delay = this.delays.get(req.execute);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const reply = (body: Record<string, unknown>, sentinel = false) => {
      if (this.echoId && req.id !== undefined) body.id = req.id;
      const json = enc.encode(JSON.stringify(body) + "\n");
      return writeAll(conn, sentinel ? new Uint8Array([0xff, ...json]) : json);
    };
    try {
      const r = await this.#run(req.execute, req.arguments ?? {});
      if (req.execute === "guest-sync-delimited") await reply({ return: r }, true);
      else if (r !== undefined) await reply({ return: r });
    } catch (err) {
      const [cls, desc] = err instanceof Error
        ? err.message.split(": ", 2)
        : ["Error", String(err)];
      await reply({ error: { class: cls, desc } });
    }
  }

  async #run(cmd: string, a: Record<string, unknown>): Promise<unknown> {
    switch (cmd) {
      case "guest-sync-delimited":
        return a.id;
      case "guest-ping":
        return {};
      case "guest-shutdown":
        return undefined; // no reply, as qemu-ga
      case "guest-exec": {
        const env = Object.fromEntries(
          ((a.env ?? []) as string[]).map((
            kv,
          ) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
        );
        let child: Deno.ChildProcess;
        try {
          child = new Deno.Command(a.path as string, {
            args: (a.arg ?? []) as string[],
            env,
            stdin: "piped",
            stdout: a["capture-output"] ? "piped" : "null",
            stderr: a["capture-output"] ? "piped" : "null",
          }).spawn();
        } catch (err) {
          throw new Error(`GenericError: Guest agent command failed, error was '${err}'`);
        }
        const w = child.stdin.getWriter();
        if (a["input-data"]) await w.write(Buffer.from(a["input-data"] as string, "base64"));
        await w.close();
        const p: Proc = { child };
        child.output().then((o) => p.done = o);
        this.procs.set(child.pid, p);
        return { pid: child.pid };
      }
      case "guest-exec-status": {
        const p = this.procs.get(a.pid as number);
        if (!p) throw new Error(`GenericError: Invalid parameter 'pid'`);
        if (!p.done) return { exited: false };
        this.procs.delete(a.pid as number);
        const o = p.done;
        const r: Record<string, unknown> = { exited: true };
        if (o.signal) r.signal = Deno.build.os === "linux" ? signum(o.signal) : 9;
        else r.exitcode = o.code;
        if (o.stdout?.length) r["out-data"] = Buffer.from(o.stdout).toString("base64");
        if (o.stderr?.length) r["err-data"] = Buffer.from(o.stderr).toString("base64");
        return r;
      }
      case "guest-file-open": {
        const mode = a.mode as string;
        try {
          const f = await Deno.open(a.path as string, {
            read: mode.startsWith("r") || mode.includes("+"),
            write: mode.startsWith("w") || mode.includes("+"),
            append: mode.startsWith("a"),
            create: mode.startsWith("w") || mode.startsWith("a"),
            truncate: mode.startsWith("w"),
          });
          this.files.set(++this.nextHandle, f);
          return this.nextHandle;
        } catch (err) {
          throw new Error(
            `GenericError: failed to open file '${a.path}' (mode: '${mode}'): ${err}`,
          );
        }
      }
      case "guest-file-read": {
        const f = this.files.get(a.handle as number)!;
        const buf = new Uint8Array(a.count as number);
        let got = 0;
        while (got < buf.length) {
          const n = await f.read(buf.subarray(got));
          if (n === null) break;
          got += n;
        }
        return {
          count: got,
          "buf-b64": Buffer.from(buf.subarray(0, got)).toString("base64"),
          eof: got < buf.length,
        };
      }
      case "guest-file-write": {
        const f = this.files.get(a.handle as number)!;
        const bytes = Buffer.from(a["buf-b64"] as string, "base64");
        let off = 0;
        while (off < bytes.length) off += await f.write(bytes.subarray(off));
        return { count: bytes.length, eof: false };
      }
      case "guest-file-close": {
        this.files.get(a.handle as number)?.close();
        this.files.delete(a.handle as number);
        return {};
      }
      default:
        throw new Error(`CommandNotFound: The command ${cmd} has not been found`);
    }
  }
}

async function writeAll(conn: Deno.UnixConn, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function signum(name: Deno.Signal): number {
  return ({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGHUP: 1 } as Record<string, number>)[name] ?? 15;
}

async function setup(opts: { start?: boolean } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "outpost-qga-" });
  const agent = new FakeAgent(join(dir, "qga.sock"));
  if (opts.start !== false) agent.start();
  const qga = new QgaClient(agent.path, { timeoutMs: 3000 });
  return {
    dir,
    agent,
    qga,
    async [Symbol.asyncDispose]() {
      qga.close();
      await agent.dispose();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("waitReady() polls until the agent's socket appears and answers a sync", async () => {
  await using t = await setup({ start: false });
  setTimeout(() => t.agent.start(), 200);
  const t0 = performance.now();
  await t.qga.waitReady(3000);
  assert.ok(performance.now() - t0 >= 150);
  assert.equal(await t.qga.ping(), true);
  // The stale data and the parser-reset complaint sent before the sync reply were skipped.
  assert.deepEqual(t.agent.requests, ["guest-sync-delimited", "guest-ping"]);
});

Deno.test("waitReady() fails at its deadline when no agent answers", async () => {
  await using t = await setup({ start: false });
  const t0 = performance.now();
  await assert.rejects(t.qga.waitReady(300), QgaTimeoutError);
  const ms = performance.now() - t0;
  assert.ok(ms >= 290 && ms < 1500, `took ${ms} ms`);
  assert.equal(await t.qga.ping(100), false);
});

Deno.test("run() returns exit code, stdout and stderr", async () => {
  await using t = await setup();
  const r = await t.qga.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
  assert.equal(r.code, 3);
  assert.equal(dec.decode(r.stdout), "out\n");
  assert.equal(dec.decode(r.stderr), "err\n");
  assert.equal(r.signal, undefined);
});

Deno.test("run() passes the environment and stdin bytes", async () => {
  await using t = await setup();
  const r = await t.qga.run(["/bin/sh", "-c", 'printf "%s:" "$GREETING"; cat'], {
    env: { GREETING: "hi there", PATH: "/usr/bin:/bin" },
    input: new Uint8Array([0, 1, 2, 255, 10]),
  });
  assert.equal(r.code, 0);
  assert.deepEqual([...r.stdout], [...enc.encode("hi there:"), 0, 1, 2, 255, 10]);
});

Deno.test("run() reports a command killed by a signal as 128 + signal", async () => {
  await using t = await setup();
  const r = await t.qga.run(["/bin/sh", "-c", "kill -KILL $$"]);
  assert.equal(r.signal, 9);
  assert.equal(r.code, 137);
});

Deno.test("run() gives up at its timeout and kills the command", async () => {
  await using t = await setup();
  const t0 = performance.now();
  await assert.rejects(t.qga.run(["sleep", "30"], { timeoutMs: 200 }), /did not finish .* 200 ms/);
  assert.ok(performance.now() - t0 < 1000);
  // The kill goes out in the background through the agent, which then forgets both commands.
  for (let i = 0; i < 100 && t.agent.procs.size > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const sleeps = [...t.agent.procs.values()];
  assert.equal(sleeps.length, 0);
});

Deno.test("run() stops on an aborted signal", async () => {
  await using t = await setup();
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error("stopped by the test")), 100);
  await assert.rejects(t.qga.run(["sleep", "30"], { signal: ac.signal }), /stopped by the test/);
  await t.qga.ping();
});

Deno.test("an agent error throws a QgaError with the agent's class and desc", async () => {
  await using t = await setup();
  await assert.rejects(t.qga.execute("guest-nonsense"), (err: unknown) => {
    assert.ok(err instanceof QgaError);
    assert.equal(err.errorClass, "CommandNotFound");
    assert.match(err.message, /^Guest agent command "guest-nonsense" failed: .*not been found/);
    return true;
  });
  assert.equal(await t.qga.ping(), true);
  // An error reply does not cost a re-sync.
  assert.equal(t.agent.requests.filter((r) => r === "guest-sync-delimited").length, 1);
});

Deno.test("a late reply after a timeout is skipped by the re-sync (with and without ids)", async () => {
  for (const echoId of [true, false]) {
    await using t = await setup();
    t.agent.echoId = echoId;
    t.agent.delays.set("guest-info", 300);
    await assert.rejects(
      t.qga.execute("guest-info", undefined, { timeoutMs: 100 }),
      /did not answer "guest-info" within 100 ms/,
    );
    // guest-info's error reply arrives while the next call waits: it must not be taken as its own.
    const handle = await t.qga.fileOpen(join(t.dir, "f"), "w");
    assert.equal(typeof handle, "number");
    await t.qga.fileClose(handle);
    assert.equal(t.agent.requests.filter((r) => r === "guest-sync-delimited").length, 2);
  }
});

Deno.test("a dropped socket (QEMU restarted) is reconnected by the next call", async () => {
  await using t = await setup();
  assert.equal(await t.qga.ping(), true);
  await t.agent.stop();
  assert.equal(await t.qga.ping(200), false);
  t.agent.start();
  assert.equal(await t.qga.ping(2000), true);
  assert.equal((await t.qga.run(["/bin/echo", "back"])).code, 0);
});

Deno.test("send() does not wait for a reply (guest-shutdown)", async () => {
  await using t = await setup();
  await t.qga.send("guest-shutdown", { mode: "powerdown" }, { timeoutMs: 500 });
  assert.equal(await t.qga.ping(), true);
  assert.ok(t.agent.requests.includes("guest-shutdown"));
});

Deno.test("writeFile(), append and readFile() round-trip bytes in chunks", async () => {
  await using t = await setup();
  const path = join(t.dir, "data.bin");
  const big = new Uint8Array(700_000).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
  await t.qga.writeFile(path, big);
  assert.deepEqual(await Deno.readFile(path), big);
  await t.qga.writeFile(path, enc.encode("tail"), { append: true });
  const back = await t.qga.readFile(path);
  assert.equal(back.length, big.length + 4);
  assert.deepEqual(back.subarray(0, big.length), big);
  assert.equal(dec.decode(back.subarray(big.length)), "tail");
  assert.deepEqual(await t.qga.readFile(join(t.dir, "data.bin")), back);
  // Every handle was closed.
  assert.equal(t.agent.files.size, 0);
  // An empty file reads as empty.
  await t.qga.writeFile(join(t.dir, "empty"), new Uint8Array());
  assert.equal((await t.qga.readFile(join(t.dir, "empty"))).length, 0);
});

Deno.test("the low-level file calls and a missing file's error", async () => {
  await using t = await setup();
  const path = join(t.dir, "x.txt");
  const h = await t.qga.fileOpen(path, "w+");
  assert.equal(await t.qga.fileWrite(h, enc.encode("hello")), 5);
  await t.qga.fileClose(h);
  const r = await t.qga.fileOpen(path, "r");
  assert.deepEqual(await t.qga.fileRead(r, 3), { data: enc.encode("hel"), eof: false });
  assert.deepEqual(await t.qga.fileRead(r, 10), { data: enc.encode("lo"), eof: true });
  await t.qga.fileClose(r);
  await assert.rejects(t.qga.readFile(join(t.dir, "missing")), QgaError);
});

Deno.test("concurrent calls take turns on the one connection", async () => {
  await using t = await setup();
  const results = await Promise.all([
    t.qga.run(["/bin/echo", "a"]),
    t.qga.run(["/bin/echo", "b"]),
    t.qga.ping(),
    t.qga.run(["/bin/sh", "-c", "echo c >&2; exit 1"]),
  ]);
  const [a, b, ok, c] = results as [
    { stdout: Uint8Array },
    { stdout: Uint8Array },
    boolean,
    { code: number; stderr: Uint8Array },
  ];
  assert.equal(dec.decode(a.stdout), "a\n");
  assert.equal(dec.decode(b.stdout), "b\n");
  assert.equal(ok, true);
  assert.equal(c.code, 1);
  assert.equal(dec.decode(c.stderr), "c\n");
});

Deno.test("close() is final", async () => {
  await using t = await setup();
  assert.equal(await t.qga.ping(), true);
  t.qga.close();
  await assert.rejects(t.qga.execute("guest-ping"), /is closed/);
});

Deno.test("a guest agent that never ends its line is cut off, not buffered without bound", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-qga-flood-" });
  const path = join(dir, "qga.sock");
  const listener = Deno.listen({ transport: "unix", path });
  const flooding = (async () => {
    const conn = await listener.accept();
    const chunk = new Uint8Array(1 << 20).fill(0x61);
    try {
      for (let i = 0; i < 100; i++) await writeAll(conn, chunk);
    } catch { /* the client hung up */ }
    conn.close();
  })();
  const qga = new QgaClient(path, { timeoutMs: 120_000 });
  try {
    const before = Deno.memoryUsage().rss;
    // Cut off at once (the connection closes), not after waiting out the timeout.
    await assert.rejects(qga.execute("guest-ping"), (e) => !(e instanceof QgaTimeoutError));
    assert.ok(Deno.memoryUsage().rss - before < 200 * 2 ** 20, "the flood was buffered");
  } finally {
    qga.close();
    listener.close();
    await flooding;
    await Deno.remove(dir, { recursive: true });
  }
});
