/**
 * Soak and growth checks against a real daemon and real LXC: many launch/exec/delete cycles leave
 * the daemon where it started (memory, fds, operation rows, log dirs), and an events subscriber
 * that never reads is dropped instead of being buffered for.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openEvents, type WebSocketClient } from "../contract/ws_client.ts";
import { eventually, TestDaemon, uniqueName } from "./helpers.ts";

const MiB = 2 ** 20;

/** The daemon's resident memory in bytes, as the kernel counts it. */
async function rss(d: TestDaemon): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${d.proc!.pid}/status`);
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)![1]) * 1024;
}

/** Open file descriptors of the daemon. */
function fds(d: TestDaemon): number {
  return readdirSync(`/proc/${d.proc!.pid}/fd`).length;
}

/** Operation rows in the daemon's database (read-only), and how many of them are running. */
function operationRows(d: TestDaemon): { rows: number; running: number } {
  const db = new DatabaseSync(join(d.dir, "outpost.db"), { readOnly: true });
  try {
    const bodies = db.prepare("SELECT body FROM operations").all() as { body: string }[];
    const running = bodies.filter((r) => {
      const code = JSON.parse(r.body).status_code;
      return code >= 100 && code < 200;
    }).length;
    return { rows: bodies.length, running };
  } finally {
    db.close();
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

interface Sample {
  rss: number;
  fds: number;
  rows: number;
  running: number;
  logDirs: string[];
  containers: string[];
}

/** Measures once the daemon is idle and finished operations have aged out (kept 5 s). */
async function sample(d: TestDaemon): Promise<Sample> {
  await new Promise((r) => setTimeout(r, 6_000));
  return {
    rss: await rss(d),
    fds: fds(d),
    ...operationRows(d),
    logDirs: entries(join(d.dir, "logs")),
    containers: entries(d.lxcPath),
  };
}

const show = (s: Sample) =>
  `RSS ${(s.rss / MiB).toFixed(1)} MiB, ${s.fds} fds, ${s.rows} operation rows ` +
  `(${s.running} running), ${s.logDirs.length} log dirs, ${s.containers.length} containers`;

/** Launch (started), exec with recorded output, stop, delete: one container's life. */
async function cycle(d: TestDaemon): Promise<void> {
  const name = uniqueName("soak");
  const path = `/1.0/instances/${name}`;
  await d.api.run("POST", "/1.0/instances", {
    body: { name, source: { type: "image", alias: "busybox" }, start: true },
  });
  const exec = await d.api.run("POST", `${path}/exec`, {
    body: { command: ["true"], "record-output": true },
  }) as { metadata: { return: number } };
  assert.equal(exec.metadata.return, 0);
  await d.api.run("PUT", `${path}/state`, { body: { action: "stop", force: true } });
  await d.api.run("DELETE", path);
}

const WARM_UP = 30;
const CYCLES = 150;
/** Cycles run side by side, as clients would. */
const PARALLEL = 3;

Deno.test({
  name: `soak: ${CYCLES} launch/exec/delete cycles leave memory, fds, operations and logs as found`,
  async fn() {
    const d = await TestDaemon.start();
    try {
      await d.importBusybox();
      const run = async (n: number) => {
        let next = 0;
        await Promise.all(Array.from({ length: PARALLEL }, async () => {
          while (next++ < n) await cycle(d);
        }));
      };
      await run(WARM_UP);
      const before = await sample(d);
      const started = performance.now();
      await run(CYCLES);
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      const after = await sample(d);
      const report = `${CYCLES} cycles in ${seconds} s\nbefore: ${show(before)}\nafter:  ${
        show(after)
      }`;
      console.log(report);

      assert.deepEqual(after.containers, before.containers, report);
      // A deleted instance's exec logs go with it.
      assert.deepEqual(after.logDirs, before.logDirs, report);
      assert.equal(after.running, 0, report);
      // Finished operations are pruned: the rows do not follow the number of cycles.
      assert.ok(after.rows <= before.rows + 10, report);
      assert.ok(after.fds <= before.fds + 5, report);
      // ~600 requests with a process or more each: memory may breathe, not climb.
      assert.ok(after.rss <= before.rss * 1.15 + 8 * MiB, report);
    } finally {
      await d.cleanup();
    }
  },
});

/** A raw events subscription that never reads a byte after its upgrade request. */
async function stuckSubscriber(d: TestDaemon): Promise<Deno.UnixConn> {
  const conn = await Deno.connect({ transport: "unix", path: d.socket });
  await conn.write(
    new TextEncoder().encode(
      "GET /1.0/events HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    ),
  );
  return conn;
}

/** A raw request on the daemon's socket; answers the status line and the body. */
async function rawRequest(d: TestDaemon, head: string): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ transport: "unix", path: d.socket });
  try {
    await conn.write(new TextEncoder().encode(head));
    let text = "";
    const buf = new Uint8Array(65536);
    while (!/\r\n\r\n[\s\S]*\}/.test(text)) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return { status: Number(text.split(" ")[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) };
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "events: a subscriber that never reads is dropped and the daemon's memory stays bounded",
  async fn() {
    const d = await TestDaemon.start();
    const stuck: Deno.UnixConn[] = [];
    let reader: WebSocketClient | undefined;
    let reading: Promise<void> | undefined;
    try {
      await d.importBusybox();
      const name = uniqueName("ev");
      await d.api.run("POST", "/1.0/instances", {
        body: { name, source: { type: "image", alias: "busybox" }, start: true },
      });
      // Each exec's lifecycle event carries its command (256 KiB in four arguments, as the kernel
      // takes at most 128 KiB in one): 300 execs make ~75 MiB of events.
      const command = ["true", ...Array.from({ length: 4 }, () => "x".repeat(64 * 1024))];
      const execs = async (n: number) => {
        for (let i = 0; i < n; i += 2) {
          await Promise.all([0, 1].map(() =>
            d.api.run("POST", `/1.0/instances/${name}/exec`, {
              body: { command, "record-output": false },
            })
          ));
        }
      };
      // A subscriber that reads keeps getting everything.
      reader = await openEvents(d.socket, "operation,lifecycle");
      let finished = 0;
      let received = 0;
      reading = (async () => {
        for await (const msg of reader!) {
          if (msg.type !== "text") continue;
          received += msg.data.length;
          const event = JSON.parse(msg.data);
          if (event.type === "operation" && event.metadata.status_code === 200) finished++;
        }
      })();
      // The same work first without the stuck subscriber: the daemon's memory finds its level.
      await execs(150);
      await new Promise((r) => setTimeout(r, 1000));
      const before = await rss(d);
      const receivedBefore = received;

      stuck.push(await stuckSubscriber(d));
      // An exec whose websockets never connect fails by itself (it holds nothing after).
      const abandoned = await d.api.request<{ id: string }>(
        "POST",
        `/1.0/instances/${name}/exec`,
        { body: { command: ["true"], "wait-for-websocket": true } },
      );
      const abandonedEnd = d.api.request<{ status_code: number; err: string }>(
        "GET",
        `/1.0/operations/${abandoned.metadata.id}/wait?timeout=30`,
      );
      await execs(300);
      const after = await rss(d);
      await eventually(() => finished >= 450, 10_000, `450 events (${finished} came)`);
      const sent = received - receivedBefore;
      const log = await d.log();
      const grew = `RSS ${(before / MiB).toFixed(0)} -> ${(after / MiB).toFixed(0)} MiB while ` +
        `the reading subscriber got ${(sent / MiB).toFixed(0)} MiB of events`;
      console.log(grew);
      const drops = log.split("\n").filter((l) => l.includes("events: dropping slow subscriber"));
      assert.equal(drops.length, 1, `one subscriber (the stuck one) should be dropped:\n${drops}`);
      const unsent = /: (\d+) (bytes|events) unsent/.exec(drops[0]);
      assert.ok(unsent, drops[0]);
      if (unsent[2] === "bytes") assert.ok(Number(unsent[1]) <= 4 * MiB, drops[0]);
      // Unbounded, the stuck subscriber alone would have held all the reader got (and more).
      assert.ok(after - before < sent * 0.75, grew);

      const op = await abandonedEnd;
      assert.equal(op.metadata.status_code, 400);
      assert.match(op.metadata.err, /Timed out waiting for the exec websockets/);

      // Upgrades without a key or with another version are refused in the envelope.
      for (const bad of ["", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"]) {
        for (const path of ["/1.0/events", `/1.0/operations/${abandoned.metadata.id}/websocket`]) {
          const res = await rawRequest(
            d,
            `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n` +
              `Connection: Upgrade\r\n${bad}Sec-WebSocket-Version: ${bad ? "99" : "13"}\r\n\r\n`,
          );
          assert.equal(res.status, 400, `${path}: ${res.body}`);
          const body = JSON.parse(res.body);
          assert.equal(body.type, "error");
          assert.equal(body.error_code, 400);
        }
      }
    } finally {
      await reader?.close();
      await reading?.catch(() => {});
      for (const c of stuck) c.close();
      await d.cleanup();
    }
  },
});
