/**
 * Hostile suite, crash consistency (issue 7, item 9): the daemon is killed with SIGKILL at random
 * points of launch, delete, snapshot (of a running container, which the daemon freezes while it
 * copies), restore, image import (a streamed upload) and stop, then restarted on the same state
 * dir. After every restart: no orphan, no temp file, no frozen leftover, no operation still
 * running, every container that was running still running, the one being created whole or gone,
 * and a fresh launch + exec + delete works. The seed is fixed (override with OUTPOST_CRASH_SEED)
 * and printed. Only the daemon's own pid is killed: the tools it started (tar, cp, lxc-stop) run on,
 * as they do after a real `kill -9`.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { gunzipSync } from "node:zlib";
import { busyboxTarball, TestDaemon } from "./helpers.ts";
import {
  call,
  closeClients,
  consistencyProblems,
  descendants,
  instances,
  must,
  type Op,
  Rng,
  sleep,
  stopStrays,
  uncaughtErrors,
  waitGone,
  waitOp,
} from "./hostile_helpers.ts";

const SEED = Number(Deno.env.get("OUTPOST_CRASH_SEED") ?? 0xc7a54);
const VERBS = ["launch", "delete", "snapshot", "restore", "import", "stop"] as const;
type Verb = typeof VERBS[number];
/** Kills per verb: 6 × 3 = 18 kills in all. */
const ROUNDS = 3;
/** The longest random delay between a verb and the kill, per verb (about its own duration). */
const MAX_DELAY_MS: Record<Verb, number> = {
  launch: 2200,
  delete: 300,
  snapshot: 600,
  restore: 1200,
  import: 0, // killed by upload progress instead
  stop: 400,
};
/** Image uploads: this many 1 MiB chunks, sent no faster than one per PACE_MS (≥ 1 s in all). */
const UPLOAD_CHUNKS = 16;
const PACE_MS = 40;
/** MiB written into the snapshot and restore targets, so their copies take a while. */
const BALLAST_MIB = 32;

// ---------------------------------------------------------------------------------------------
// A large, valid, unique image upload, streamed

/** The busybox image as a plain tar without its end-of-archive blocks (so entries can follow). */
async function baseTar(): Promise<Uint8Array> {
  const tar = gunzipSync(await Deno.readFile(await busyboxTarball()));
  let off = 0;
  while (off + 512 <= tar.length && tar.subarray(off, off + 512).some((b) => b !== 0)) {
    const size = parseInt(new TextDecoder().decode(tar.subarray(off + 124, off + 136)), 8) || 0;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return tar.slice(0, off);
}

/** A ustar header for a regular file. */
function fileHeader(name: string, size: number): Uint8Array {
  const h = new Uint8Array(512);
  const put = (at: number, s: string) => h.set(new TextEncoder().encode(s), at);
  const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, "0") + "\0";
  put(0, name);
  put(100, octal(0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(size, 12));
  put(136, octal(Math.floor(Date.now() / 1000), 12));
  put(148, "        ");
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  const sum = h.reduce((a, b) => a + b, 0);
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

/** The image with a unique `rootfs/pad` file of UPLOAD_CHUNKS MiB, as a paced stream. */
function imageUpload(base: Uint8Array, tag: string): ReadableStream<Uint8Array> {
  const size = UPLOAD_CHUNKS * 2 ** 20;
  const first = new Uint8Array(2 ** 20);
  first.set(new TextEncoder().encode(tag));
  const zeros = new Uint8Array(2 ** 20);
  let i = -1;
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      if (i === -1) {
        ctl.enqueue(base);
        ctl.enqueue(fileHeader("rootfs/pad", size));
      } else if (i < UPLOAD_CHUNKS) {
        await sleep(PACE_MS);
        ctl.enqueue(i === 0 ? first : zeros);
      } else if (i === UPLOAD_CHUNKS) {
        ctl.enqueue(new Uint8Array(1024)); // the end-of-archive blocks
      } else {
        ctl.close();
      }
      i++;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// The checks after a restart

/** Operations the store still holds as created or running that began before `since`. */
function storedRunning(d: TestDaemon, since: string): string[] {
  const db = new DatabaseSync(join(d.dir, "outpost.db"), { readOnly: true });
  try {
    const rows = db.prepare("SELECT body FROM operations").all() as { body: string }[];
    return rows.map((r) => JSON.parse(r.body) as Op)
      .filter((op) => op.status_code < 200 && op.created_at < since)
      .map((op) => `${op.id} (${op.description}, ${op.status})`);
  } finally {
    db.close();
  }
}

async function operationProblems(d: TestDaemon, since: string, opId?: string): Promise<string[]> {
  const problems: string[] = [];
  const listed = await must(d, "GET", "/1.0/operations?recursion=1");
  const running = (listed.body!.metadata as Record<string, Op[]>).running ?? [];
  for (const op of running.filter((o) => o.created_at < since)) {
    problems.push(
      `operation ${op.id} (${op.description}) from before the restart is listed running`,
    );
  }
  if (opId) {
    const got = await call(d, "GET", `/1.0/operations/${opId}`);
    const op = got.body?.metadata as Op | undefined;
    if (got.status === 200 && op && op.status_code < 200) {
      problems.push(`the interrupted operation ${opId} (${op.description}) answers ${op.status}`);
    }
  }
  for (const s of storedRunning(d, since)) {
    problems.push(`operation ${s} is still stored as running after the restart`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------

interface Kill {
  cycle: number;
  verb: Verb;
  delay: number;
  /** How far the verb got by the kill, as the test saw it. */
  seen: string;
}

Deno.test("kill -9 at random points of launch, delete, snapshot, restore, import and stop leaves nothing behind", async () => {
  console.log(`crash seed: ${SEED} (set OUTPOST_CRASH_SEED to replay)`);
  const rng = new Rng(SEED);
  const started = performance.now();
  const d = await TestDaemon.start();
  const problems: string[] = [];
  const restarts: number[] = [];
  const kills: Kill[] = [];
  const reported = new Set<string>();
  try {
    await d.importBusybox("busybox");
    const base = await baseTar();
    const launch = (name: string, start = true) =>
      must(d, "POST", "/1.0/instances", {
        body: { name, source: { type: "image", alias: "busybox" }, start },
        timeoutMs: 60_000,
      });
    const startIfStopped = async (name: string) => {
      const inst = (await instances(d)).find((i) => i.name === name);
      if (inst?.status === "Stopped") {
        await must(d, "PUT", `/1.0/instances/${name}/state`, { body: { action: "start" } });
      }
    };
    // Bystanders that must survive every kill, and the long-lived targets.
    await Promise.all(["bystander", "snapper", "restorer", "stopper"].map((n) => launch(n)));
    for (const n of ["snapper", "restorer"]) {
      await must(d, "POST", `/1.0/instances/${n}/exec`, {
        body: {
          command: ["dd", "if=/dev/zero", "of=/root/ballast", "bs=1M", `count=${BALLAST_MIB}`],
          "wait-for-websocket": false,
        },
      });
    }
    await must(d, "POST", "/1.0/instances/restorer/snapshots", { body: { name: "s0" } });

    // Each verb is killed once in each third of its delay range (the first third sometimes at
    // once, right after the request was accepted), in a shuffled order.
    const plan = rng.shuffle(
      VERBS.flatMap((verb) => Array.from({ length: ROUNDS }, (_, round) => ({ verb, round }))),
    );
    for (const [cycle, { verb, round }] of plan.entries()) {
      const tag = `cycle ${cycle} (${verb})`;
      // Set up the target.
      await startIfStopped("stopper");
      await startIfStopped("restorer");
      const target = verb === "launch"
        ? `l${cycle}`
        : verb === "delete"
        ? `del${cycle}`
        : verb === "snapshot"
        ? "snapper"
        : verb === "restore"
        ? "restorer"
        : verb === "stop"
        ? "stopper"
        : "";
      if (verb === "delete") await launch(target, false);
      const before = await instances(d);
      const runningBefore = before.filter((i) => i.status === "Running").map((i) => i.name);
      const imagesBefore = (await d.api.get<string[]>("/1.0/images")).length;

      // The verb, a random delay, the kill.
      const third = MAX_DELAY_MS[verb] / ROUNDS;
      let delay = round === 0 && rng.int(2) === 0
        ? 0
        : Math.floor(third * round + rng.next() * third);
      let orphans: { pid: number; comm: string }[] = [];
      let opId: string | undefined;
      let seen = "accepted";
      if (verb === "import") {
        // Killed at a point of the upload itself: at once, part-way, or just after the last byte
        // was written (while the daemon reads the tarball and records the image).
        const whole = base.length + 512 + UPLOAD_CHUNKS * 2 ** 20 + 1024;
        const at = round === 0
          ? (rng.int(2) === 0 ? 0 : whole * (0.05 + 0.35 * rng.next()))
          : round === 1
          ? whole * (0.5 + 0.45 * rng.next())
          : whole;
        const extra = round === 2 ? rng.int(150) : 0;
        let done = "";
        const t0 = performance.now();
        const upload = call(d, "POST", "/1.0/images", {
          raw: imageUpload(base, `${SEED}-${cycle}`),
          timeoutMs: 60_000,
        }).then((a) => {
          done = `upload answered ${a.status || a.error}`;
          opId = (a.body?.metadata as Op | undefined)?.id;
        });
        while (!done && uploaded(d) < at && performance.now() - t0 < 30_000) await sleep(5);
        await sleep(extra);
        delay = Math.round(performance.now() - t0);
        seen = done || uploadProgress(d, whole);
        orphans = descendants(d.proc!.pid);
        await d.kill9();
        await upload;
      } else {
        const req = verb === "launch"
          ? call(d, "POST", "/1.0/instances", {
            body: { name: target, source: { type: "image", alias: "busybox" }, start: true },
          })
          : verb === "delete"
          ? call(d, "DELETE", `/1.0/instances/${target}`)
          : verb === "snapshot"
          ? call(d, "POST", `/1.0/instances/${target}/snapshots`, { body: { name: `c${cycle}` } })
          : verb === "restore"
          ? call(d, "PUT", `/1.0/instances/${target}`, { body: { restore: "s0" } })
          : call(d, "PUT", `/1.0/instances/${target}/state`, {
            body: { action: "stop", force: rng.int(2) === 0, timeout: 5 },
          });
        const accepted = await req;
        assert.equal(accepted.status, 202, `${tag}: ${accepted.text}`);
        opId = (accepted.body!.metadata as Op).id;
        await sleep(delay);
        const op = await call(d, "GET", `/1.0/operations/${opId}`);
        seen = (op.body?.metadata as Op | undefined)?.status ?? "unknown";
        orphans = descendants(d.proc!.pid);
        await d.kill9();
      }
      kills.push({ cycle, verb, delay, seen });

      // Restart on the same dir.
      const since = new Date().toISOString();
      const logBefore = (await d.log()).length;
      const t0 = performance.now();
      await d.spawn();
      restarts.push(performance.now() - t0);
      const recovered = (await d.log()).slice(logBefore).split("\n")
        .filter((l) => /instance |images: |removed |operation\(s\)/.test(l))
        .filter((l) => !/: (running|stopped)$/.test(l))
        .map((l) => l.replace(/^\S+ /, ""));
      // The tools the killed daemon started run on; the checks wait for them (the restart did not).
      const tw = performance.now();
      const left = await waitGone(orphans.map((o) => o.pid));
      if (orphans.length > 0) {
        seen += `; orphans: ${orphans.map((o) => o.comm).join(", ")} gone ${
          (performance.now() - tw).toFixed(0)
        } ms after the restart`;
      }
      const found: string[] = [];
      if (left.length > 0) {
        found.push(`processes of the killed daemon still run: ${left.join(", ")}`);
      }
      found.push(...await consistencyProblems(d));
      found.push(...await operationProblems(d, since, opId));
      const after = await instances(d);
      const status = new Map(after.map((i) => [i.name, i.status]));
      for (const n of runningBefore) {
        if (n === target && (verb === "stop" || verb === "delete")) continue;
        if (status.get(n) !== "Running") {
          found.push(
            `instance ${n} was running before the kill and is ${status.get(n) ?? "gone"} after it`,
          );
        }
      }
      // The instance being created is whole (it starts and runs a command) or absent.
      if (verb === "launch" && status.has(target)) {
        try {
          await startIfStopped(target);
          await execOk(d, target);
          await must(d, "PUT", `/1.0/instances/${target}/state`, {
            body: { action: "stop", force: true },
          });
          await must(d, "DELETE", `/1.0/instances/${target}`);
        } catch (err) {
          found.push(`the half-launched ${target} is recorded but broken: ${String(err)}`);
        }
      }
      if (verb === "delete" && status.has(target)) {
        const del = await call(d, "DELETE", `/1.0/instances/${target}`);
        const op = del.status === 202
          ? (await waitOp(d, (del.body!.metadata as Op).id)).body?.metadata as Op | undefined
          : undefined;
        if (op?.status_code !== 200) {
          found.push(`the half-deleted ${target} cannot be deleted: ${op?.err ?? del.text}`);
        }
      }
      let imported = 0;
      if (verb === "import") {
        const fps = await d.api.get<string[]>("/1.0/images");
        imported = fps.length - imagesBefore;
        for (const url of fps.slice(imagesBefore)) await must(d, "DELETE", url);
      }
      // The daemon answers and works: a fresh launch, exec and delete.
      try {
        const fresh = `f${cycle}`;
        await launch(fresh);
        await execOk(d, fresh);
        await must(d, "PUT", `/1.0/instances/${fresh}/state`, {
          body: { action: "stop", force: true },
        });
        await must(d, "DELETE", `/1.0/instances/${fresh}`);
      } catch (err) {
        found.push(`a fresh launch + exec + delete failed: ${String(err)}`);
      }
      // A problem is reported once, at the first restart that shows it.
      const news = found.filter((p) => !reported.has(p));
      for (const p of news) {
        reported.add(p);
        problems.push(`${tag}, killed after ${delay} ms (${seen}): ${p}`);
      }
      console.log(
        `${tag}: killed after ${delay} ms (${seen}); ${
          target ? `${target} is ${status.get(target) ?? "absent"}` : `${imported} image(s) kept`
        }; ${news.length} new problem(s)${
          recovered.length ? `; recovery: ${recovered.join("; ")}` : ""
        }`,
      );
    }
    for (const line of await uncaughtErrors(d)) problems.push(`daemon log: ${line}`);
    const recovery = (await d.log()).split("\n").filter((l) =>
      /recovery of .* failed|could not thaw|autostart failed/i.test(l)
    );
    for (const line of recovery) problems.push(`daemon log: ${line}`);
    const secs = ((performance.now() - started) / 1000).toFixed(0);
    const mean = restarts.reduce((a, b) => a + b, 0) / restarts.length;
    console.log(
      `${kills.length} kills in ${secs} s; restart ${mean.toFixed(0)} ms on average; ${
        kills.filter((k) => k.seen.startsWith("mid-upload")).length
      } mid-upload`,
    );
    assert.ok(kills.length >= 15, "at least 15 kills");
    assert.deepEqual(problems, [], `${problems.length} problem(s) after kill -9 (seed ${SEED})`);
  } finally {
    closeClients();
    await stopStrays(d);
    await d.cleanup();
  }
});

/** Bytes of the upload the daemon has written so far. */
function uploaded(d: TestDaemon): number {
  const dir = join(d.dir, "images");
  const tmp = readdirSync(dir).find((f) => f.startsWith(".upload-"));
  try {
    return tmp ? statSync(join(dir, tmp)).size : 0;
  } catch {
    return 0; // renamed into place meanwhile
  }
}

/** How far the upload got when the kill comes. */
function uploadProgress(d: TestDaemon, whole: number): string {
  const got = uploaded(d);
  if (got === 0) return "upload not started or being recorded";
  const mib = (got / 2 ** 20).toFixed(1);
  return got < whole ? `mid-upload, ${mib} MiB in` : "upload written, importing";
}

/** Runs `echo ok` in the instance (recorded output) and checks its exit code. */
async function execOk(d: TestDaemon, name: string): Promise<void> {
  const done = await must(d, "POST", `/1.0/instances/${name}/exec`, {
    body: { command: ["echo", "ok"], "record-output": true, "wait-for-websocket": false },
  });
  const ret = (done.body?.metadata as Op).metadata?.return;
  if (ret !== 0) throw new Error(`exec in ${name} returned ${ret}`);
  if (!existsSync(join(d.dir, "logs", name))) throw new Error(`exec in ${name} left no log`);
}
