/**
 * Hostile suite, concurrency (issue 7, items 5, 6, 8, 10 and 11): parallel updates of one instance
 * lose nothing; 50 clients doing mixed verbs on overlapping names get only successes, clear 4xx
 * answers or operations that fail with a message, and leave the store, the disk and LXC in
 * agreement; frozen instances refuse exec and files at once; limits are range-checked and a
 * non-limit key never touches them; a container killed behind the daemon's back stays stopped;
 * an instance's exec logs go with it. The seed is fixed (override with OUTPOST_CONCURRENCY_SEED)
 * and printed.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TestDaemon } from "./helpers.ts";
import {
  type Answer,
  call,
  closeClients,
  consistencyProblems,
  instances,
  lxcAttachProcesses,
  must,
  type Op,
  Rng,
  sleep,
  stopStrays,
  uncaughtErrors,
  waitOp,
} from "./hostile_helpers.ts";

const SEED = Number(Deno.env.get("OUTPOST_CONCURRENCY_SEED") ?? 0xc0c0a);
const CLIENTS = 50;
const DURATION_MS = 1000 * Number(Deno.env.get("OUTPOST_CONCURRENCY_SECONDS") ?? 40);
/** No answer (or no end of an operation) within this long is a hang. */
const HANG_MS = 60_000;
/** The overlapping names the clients fight over. */
const NAMES = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
/** The client errors a request may answer (in the Incus error envelope). */
const CLEAR_4XX = new Set([400, 404, 409, 412]);

async function withDaemon(fn: (d: TestDaemon) => Promise<void>): Promise<void> {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("busybox");
    await fn(d);
  } finally {
    closeClients();
    await stopStrays(d);
    await d.cleanup();
  }
}

const launch = (d: TestDaemon, name: string, start = true) =>
  must(d, "POST", "/1.0/instances", {
    body: { name, source: { type: "image", alias: "busybox" }, start },
    timeoutMs: HANG_MS,
  });

/** The instance's config as the API reports it. */
async function configOf(d: TestDaemon, name: string): Promise<Record<string, string>> {
  const a = await must(d, "GET", `/1.0/instances/${name}`);
  return (a.body!.metadata as { config: Record<string, string> }).config;
}

/** Asserts a clear client error in the Incus envelope. */
function assertClientError(a: Answer, status: number, what: string): void {
  assert.equal(a.status, status, `${what}: ${a.status} ${a.text || a.error}`);
  assert.equal(a.body?.type, "error", `${what}: not an error envelope: ${a.text}`);
  assert.equal(a.body?.error_code, status, what);
  assert.ok(a.body?.error, `${what}: empty error message`);
}

// ---------------------------------------------------------------------------------------------
// Lost updates (item 6)

Deno.test("50 parallel PATCHes of distinct keys all land; of 20 PUTs with one ETag exactly one wins", () =>
  withDaemon(async (d) => {
    await launch(d, "lu");
    const patches = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        call(d, "PATCH", "/1.0/instances/lu", {
          body: { config: { [`user.k${i}`]: `v${i}` } },
          timeoutMs: HANG_MS,
        })),
    );
    assert.deepEqual(
      patches.map((a, i) => [i, a.status]).filter(([, s]) => s !== 200),
      [],
      `every PATCH answers 200: ${patches.find((a) => a.status !== 200)?.text}`,
    );
    const config = await configOf(d, "lu");
    const kept = Array.from({ length: 50 }, (_, i) => i).filter((i) =>
      config[`user.k${i}`] === `v${i}`
    );
    console.log(`${kept.length} of 50 PATCHed keys kept`);
    assert.equal(kept.length, 50, "all 50 keys are stored");

    // Conditional PUTs: all read the same ETag; the first to land changes it.
    const got = await must(d, "GET", "/1.0/instances/lu");
    const etag = got.headers.get("etag");
    assert.ok(etag, "GET /1.0/instances/NAME carries an ETag");
    const cur = got.body!.metadata as {
      config: Record<string, string>;
      devices: unknown;
      profiles: string[];
      description: string;
    };
    const writable = Object.fromEntries(
      Object.entries(cur.config).filter(([k]) => !k.startsWith("volatile.")),
    );
    const puts = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        call(d, "PUT", "/1.0/instances/lu", {
          body: {
            config: { ...writable, "user.winner": String(i) },
            devices: cur.devices,
            profiles: cur.profiles,
            description: cur.description,
          },
          headers: { "If-Match": etag },
          timeoutMs: HANG_MS,
        })),
    );
    const won = puts.flatMap((a, i) => a.status === 200 || a.status === 202 ? [i] : []);
    const refused = puts.filter((a) => a.status === 412);
    console.log(`PUTs with one ETag: ${won.length} won, ${refused.length} got 412`);
    assert.equal(won.length, 1, `exactly one PUT wins: ${puts.map((a) => a.status).join(",")}`);
    assert.equal(refused.length, 19, "the other 19 get 412");
    for (const a of refused) assertClientError(a, 412, "a PUT with a stale ETag");
    const after = await configOf(d, "lu");
    assert.equal(after["user.winner"], String(won[0]), "the winner's config is the stored one");
    assert.equal(after["user.k49"], "v49", "the PUT kept the keys it was given");
  }));

// ---------------------------------------------------------------------------------------------
// 50 clients, mixed verbs, overlapping names

const VERBS = [
  "launch",
  "start",
  "stop",
  "restart",
  "freeze",
  "unfreeze",
  "rename",
  "delete",
  "snapshot",
  "exec",
  "push",
  "pull",
  "patch",
  "list",
  "get",
] as const;
type Verb = typeof VERBS[number];

interface Tally {
  requests: number;
  byStatus: Map<string, number>;
  opFailures: Map<string, number>;
  /** The first request that met each operation failure. */
  examples: Map<string, string>;
  latencies: number[];
  problems: string[];
}

function count<K>(m: Map<K, number>, k: K): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/** Failure messages with the names and ids taken out, so alike ones count together. */
function shape(msg: string): string {
  return msg.replace(/"m\d"/g, '"NAME"').replace(/\b[0-9a-f-]{8,}\b/g, "ID").replace(
    /snap\d+|"s\d"/g,
    "SNAP",
  ).slice(0, 160);
}

/**
 * Judges one answer: a sync success, a clear 4xx in the envelope, or an operation, which is
 * waited for and must succeed or fail with a message. Anything else is a problem.
 */
async function judge(
  d: TestDaemon,
  t: Tally,
  what: string,
  a: Answer,
  only200 = false,
): Promise<{ ok: boolean }> {
  t.requests++;
  t.latencies.push(a.ms);
  const key = a.status === 0 ? (a.timedOut ? "hang" : "no answer") : String(a.status);
  count(t.byStatus, key);
  if (a.status === 0) {
    t.problems.push(`${what}: ${a.timedOut ? `no answer in ${HANG_MS} ms` : a.error}`);
    return { ok: false };
  }
  if (only200 && a.status !== 200) {
    t.problems.push(`${what}: answered ${a.status} (must be 200): ${a.text.slice(0, 200)}`);
    return { ok: false };
  }
  if (a.status === 200) return { ok: true };
  if (CLEAR_4XX.has(a.status)) {
    const b = a.body;
    if (b?.type !== "error" || b.error_code !== a.status || !b.error) {
      t.problems.push(`${what}: ${a.status} outside the error envelope: ${a.text.slice(0, 200)}`);
    }
    return { ok: false };
  }
  if (a.status !== 202) {
    t.problems.push(`${what}: answered ${a.status}: ${a.text.slice(0, 300)}`);
    return { ok: false };
  }
  const id = (a.body?.metadata as Op | undefined)?.id;
  if (!id) {
    t.problems.push(`${what}: 202 without an operation: ${a.text.slice(0, 200)}`);
    return { ok: false };
  }
  const w = await waitOp(d, id, HANG_MS);
  const op = w.body?.metadata as Op | undefined;
  if (w.status !== 200 || !op) {
    t.problems.push(
      `${what}: waiting for its operation answered ${w.status}: ${w.text || w.error}`,
    );
    return { ok: false };
  }
  if (op.status_code === 200) {
    count(t.byStatus, "op success");
    return { ok: true };
  }
  if (op.status_code === 400 || op.status_code === 401) {
    count(t.byStatus, "op failure");
    count(t.opFailures, shape(op.err));
    if (!t.examples.has(shape(op.err))) {
      t.examples.set(shape(op.err), `${what} at ${op.created_at}`);
    }
    if (!op.err?.trim()) t.problems.push(`${what}: its operation failed without a message`);
    if (/TypeError|ReferenceError|Cannot read prop|is not a function|undefined/.test(op.err)) {
      t.problems.push(`${what}: its operation failed with an internal error: ${op.err}`);
    }
    return { ok: false };
  }
  t.problems.push(`${what}: its operation is still ${op.status} after ${HANG_MS} ms`);
  return { ok: false };
}

/** One client: random verbs on random names until the deadline. */
async function client(d: TestDaemon, i: number, end: number, t: Tally): Promise<void> {
  const rng = new Rng(SEED + 7919 * (i + 1));
  const opts = (o: Parameters<typeof call>[3] = {}) => ({ timeoutMs: HANG_MS, ...o });
  const state = (name: string, body: Record<string, unknown>) =>
    call(d, "PUT", `/1.0/instances/${name}/state`, opts({ body }));
  while (performance.now() < end) {
    const verb: Verb = rng.pick(VERBS);
    const name = rng.pick(NAMES);
    const what = `client ${i}: ${verb} ${name}`;
    switch (verb) {
      case "launch":
        await judge(
          d,
          t,
          what,
          await call(
            d,
            "POST",
            "/1.0/instances",
            opts({
              body: { name, source: { type: "image", alias: "busybox" }, start: rng.int(2) === 0 },
            }),
          ),
        );
        break;
      case "start":
        await judge(d, t, what, await state(name, { action: "start" }));
        break;
      case "stop":
        await judge(d, t, what, await state(name, { action: "stop", force: rng.int(2) === 0 }));
        break;
      case "restart":
        await judge(
          d,
          t,
          what,
          await state(name, { action: "restart", force: rng.int(2) === 0, timeout: 3 }),
        );
        break;
      case "freeze": {
        // A user who freezes resumes a little later (the end state must hold nothing frozen).
        const { ok } = await judge(d, t, what, await state(name, { action: "freeze" }));
        if (ok) {
          await sleep(rng.int(500));
          await judge(d, t, `${what} (resume)`, await state(name, { action: "unfreeze" }));
        }
        break;
      }
      case "unfreeze":
        await judge(d, t, what, await state(name, { action: "unfreeze" }));
        break;
      case "rename":
        await judge(
          d,
          t,
          what,
          await call(
            d,
            "POST",
            `/1.0/instances/${name}`,
            opts({ body: { name: rng.pick(NAMES) } }),
          ),
        );
        break;
      case "delete":
        await judge(d, t, what, await call(d, "DELETE", `/1.0/instances/${name}`, opts()));
        break;
      case "snapshot":
        await judge(
          d,
          t,
          what,
          await call(
            d,
            "POST",
            `/1.0/instances/${name}/snapshots`,
            opts({ body: { name: rng.int(2) === 0 ? "" : `s${rng.int(3)}` } }),
          ),
        );
        break;
      case "exec":
        await judge(
          d,
          t,
          what,
          await call(
            d,
            "POST",
            `/1.0/instances/${name}/exec`,
            opts({
              body: {
                command: ["sh", "-c", "echo hi; cat /etc/hostname"],
                "record-output": rng.int(2) === 0,
                "wait-for-websocket": false,
              },
            }),
          ),
        );
        break;
      case "push":
        await judge(
          d,
          t,
          what,
          await call(
            d,
            "POST",
            `/1.0/instances/${name}/files?path=/root/f${rng.int(3)}`,
            opts({ raw: `client ${i}\n`, headers: { "X-LXD-type": "file" } }),
          ),
        );
        break;
      case "pull":
        await judge(
          d,
          t,
          what,
          await call(d, "GET", `/1.0/instances/${name}/files?path=/etc/hostname`, opts()),
        );
        break;
      case "patch":
        await judge(
          d,
          t,
          what,
          await call(
            d,
            "PATCH",
            `/1.0/instances/${name}`,
            opts({ body: { config: { [`user.c${i}`]: String(rng.int(1000)) } } }),
          ),
        );
        break;
      case "list":
        // A list must answer whatever happens to the instances in it meanwhile.
        await judge(
          d,
          t,
          what,
          await call(d, "GET", `/1.0/instances?recursion=${rng.int(3)}`, opts()),
          true,
        );
        break;
      case "get":
        await judge(d, t, what, await call(d, "GET", `/1.0/instances/${name}?recursion=1`, opts()));
        break;
    }
  }
}

/** Problems alike but for client, instance, pid and timing, counted together. */
function tallied(problems: string[]): string[] {
  const counts = new Map<string, number>();
  for (const p of problems) {
    const key = p.replace(/^client \d+/, "client N").replace(/\bm\d\b/g, "NAME")
      .replace(/\/proc\/\d+/g, "/proc/PID").replace(/\d+ ms/g, "N ms");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([p, n]) => (n > 1 ? `${n} × ${p}` : p));
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0;
}

Deno.test("50 clients doing mixed verbs on overlapping names get only clear answers, and the store, the disk and LXC agree afterwards", () =>
  withDaemon(async (d) => {
    console.log(`concurrency seed: ${SEED} (set OUTPOST_CONCURRENCY_SEED to replay)`);
    await Promise.all([
      launch(d, "m0"),
      launch(d, "m1"),
      launch(d, "m2", false),
      launch(d, "m3", false),
    ]);
    const pid = d.proc!.pid;
    const t: Tally = {
      requests: 0,
      byStatus: new Map(),
      opFailures: new Map(),
      examples: new Map(),
      latencies: [],
      problems: [],
    };
    const started = performance.now();
    const end = started + DURATION_MS;
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(d, i, end, t)));
    const secs = (performance.now() - started) / 1000;

    console.log(
      `${t.requests} requests from ${CLIENTS} clients in ${secs.toFixed(0)} s; latency p50 ${
        percentile(t.latencies, 0.5).toFixed(0)
      } ms, p99 ${percentile(t.latencies, 0.99).toFixed(0)} ms, max ${
        Math.max(...t.latencies).toFixed(0)
      } ms`,
    );
    console.log(`answers: ${JSON.stringify(Object.fromEntries(t.byStatus))}`);
    const failures = [...t.opFailures.entries()].sort((a, b) => b[1] - a[1]);
    console.log(
      `operation failures:\n${
        failures.map(([m, n]) => `  ${n} × ${m}\n      (first: ${t.examples.get(m)})`).join("\n")
      }`,
    );

    // The daemon is the same process, alive and answering; nothing escaped a handler.
    const problems = [...t.problems];
    assert.equal(d.proc?.pid, pid);
    const alive = await call(d, "GET", "/1.0");
    if (alive.status !== 200) problems.push(`the daemon no longer answers: ${alive.error}`);
    for (const line of await uncaughtErrors(d)) problems.push(`daemon log: ${line}`);
    const ops = await must(d, "GET", "/1.0/operations?recursion=1");
    for (const op of (ops.body!.metadata as Record<string, Op[]>).running ?? []) {
      problems.push(
        `operation ${op.id} (${op.description}) still running after every client ended`,
      );
    }
    // Store, disk and LXC agree; nothing is left frozen; no exec is left behind.
    problems.push(...await consistencyProblems(d));
    const attach = lxcAttachProcesses(d);
    if (attach.length > 0) problems.push(`lxc-attach processes left: ${attach.join("; ")}`);
    const final = await instances(d);
    console.log(
      `afterwards: ${final.map((i) => `${i.name} ${i.status}`).join(", ") || "no instances"}`,
    );
    assert.ok(t.requests >= CLIENTS * 3, `the clients got through (${t.requests} requests)`);
    assert.deepEqual(tallied(problems), [], `${problems.length} problem(s) (seed ${SEED})`);
  }));

// ---------------------------------------------------------------------------------------------
// Races the mixed run found, alone

Deno.test("a rename racing a start never leaves a container running without its record", () =>
  withDaemon(async (d) => {
    await launch(d, "r0", false);
    let name = "r0";
    const problems: string[] = [];
    for (let round = 1; round <= 5; round++) {
      const next = `r${round}`;
      const answers = await Promise.all([
        call(d, "PUT", `/1.0/instances/${name}/state`, { body: { action: "start" } }),
        call(d, "POST", `/1.0/instances/${name}`, { body: { name: next } }),
      ]);
      const ends = [];
      for (const a of answers) {
        if (a.status !== 202) continue;
        const op = (await waitOp(d, (a.body!.metadata as Op).id)).body?.metadata as Op;
        ends.push(`${op.description}: ${op.status}${op.err ? ` (${op.err})` : ""}`);
      }
      const found = await consistencyProblems(d);
      for (const p of found) problems.push(`round ${round} (${ends.join(", ")}): ${p}`);
      // Back to one stopped instance, whatever happened.
      await stopStrays(d);
      name = (await instances(d))[0].name;
    }
    assert.deepEqual(problems, []);
  }));

Deno.test("file requests racing restarts answer 200 or a clear 4xx, never a 5xx", () =>
  withDaemon(async (d) => {
    await launch(d, "fr");
    const end = performance.now() + 8_000;
    const answers = new Map<string, number>();
    const restarter = async () => {
      while (performance.now() < end) {
        const a = await call(d, "PUT", "/1.0/instances/fr/state", {
          body: { action: "restart", force: true },
        });
        if (a.status === 202) await waitOp(d, (a.body!.metadata as Op).id);
      }
    };
    const files = async (i: number) => {
      while (performance.now() < end) {
        const a = i % 2 === 0
          ? await call(d, "POST", `/1.0/instances/fr/files?path=/root/f${i}`, { raw: "x" })
          : await call(d, "GET", "/1.0/instances/fr/files?path=/etc/hostname");
        const key = `${a.status || a.error} ${
          a.status >= 400 ? (a.body?.error ?? "").replace(/\d+/g, "N").slice(0, 100) : ""
        }`.trim();
        answers.set(key, (answers.get(key) ?? 0) + 1);
      }
    };
    await Promise.all([restarter(), ...Array.from({ length: 4 }, (_, i) => files(i))]);
    console.log(JSON.stringify(Object.fromEntries(answers), null, 1));
    const bad = [...answers].filter(([k]) => !/^(200|400|404|409)\b/.test(k));
    assert.deepEqual(bad, [], "every answer is a success or a clear 4xx");
  }));

// ---------------------------------------------------------------------------------------------
// Single checks

Deno.test("exec and file requests on a frozen container answer 409 at once and leave no lxc-attach behind", () =>
  withDaemon(async (d) => {
    await launch(d, "fz");
    await must(d, "PUT", "/1.0/instances/fz/state", { body: { action: "freeze" } });
    const tries: [string, string, Parameters<typeof call>[3]][] = [
      ["POST", "/1.0/instances/fz/exec", {
        body: { command: ["true"], "record-output": true, "wait-for-websocket": false },
      }],
      ["POST", "/1.0/instances/fz/exec", {
        body: { command: ["true"], "wait-for-websocket": true, interactive: false },
      }],
      ["GET", "/1.0/instances/fz/files?path=/etc/hostname", {}],
      ["HEAD", "/1.0/instances/fz/files?path=/etc/hostname", {}],
      ["POST", "/1.0/instances/fz/files?path=/root/pushed", { raw: "data\n" }],
      ["DELETE", "/1.0/instances/fz/files?path=/etc/hostname", {}],
    ];
    for (const [method, path, opts] of tries) {
      const a = await call(d, method, path, { ...opts, timeoutMs: 10_000 });
      const what = `${method} ${path} on a frozen container`;
      console.log(
        `${what}: ${a.status || (a.timedOut ? "no answer" : a.error)} in ${a.ms.toFixed(0)} ms`,
      );
      assert.notEqual(a.status, 202, `${what} started an operation instead of refusing`);
      if (method === "HEAD") {
        assert.equal(a.status, 409, what);
      } else {
        assertClientError(a, 409, what);
        assert.match(a.body!.error!, /frozen/i, what);
      }
      assert.ok(a.ms < 3000, `${what} took ${a.ms.toFixed(0)} ms`);
    }
    await sleep(300);
    assert.deepEqual(lxcAttachProcesses(d, "fz"), [], "no lxc-attach left waiting");
    // Still frozen and untouched; resumed, it answers again.
    assert.equal((await d.lxcState("fz")).state, "FROZEN");
    await must(d, "PUT", "/1.0/instances/fz/state", { body: { action: "unfreeze" } });
    const done = await must(d, "POST", "/1.0/instances/fz/exec", {
      body: { command: ["true"], "record-output": true, "wait-for-websocket": false },
    });
    assert.equal((done.body!.metadata as Op).metadata?.return, 0);
    const pushed = await call(d, "GET", "/1.0/instances/fz/files?path=/root/pushed");
    assert.equal(pushed.status, 404, "the refused push wrote nothing");
  }));

/** The memory limit of a container's init process, from the kernel (cgroup v1 or v2). */
function memoryLimit(pid: number): string {
  const cgroups = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const v1 = cgroups.map((l) => /^\d+:([^:]*):(.*)$/.exec(l)).find((m) =>
    m?.[1].split(",").includes("memory")
  );
  if (v1) {
    const mount = mounts.map((l) => l.split(" - ")).find(([, r]) =>
      r?.startsWith("cgroup ") && r.split(" ")[2]?.split(",").includes("memory")
    )?.[0].split(" ")[4];
    assert.ok(mount, "the cgroup v1 memory controller is mounted");
    return readFileSync(join(mount, v1[2], "memory.limit_in_bytes"), "utf8").trim();
  }
  const v2 = cgroups.map((l) => /^0::(.*)$/.exec(l)).find(Boolean);
  const mount = mounts.map((l) => l.split(" - ")).find(([, r]) => r?.startsWith("cgroup2 "))
    ?.[0].split(" ")[4];
  assert.ok(v2 && mount, "a memory cgroup");
  return readFileSync(join(mount, v2[1], "memory.max"), "utf8").trim();
}

const UNLIMITED = (v: string) => v === "max" || Number(v) >= 2 ** 62;

Deno.test("limits: a non-limit key never touches them, unset works live, bad values are 400 and change nothing", () =>
  withDaemon(async (d) => {
    await launch(d, "lim");
    const config = () => Deno.readTextFile(join(d.lxcPath, "lim", "config"));
    const pid = (await d.lxcState("lim")).pid;
    assert.ok(UNLIMITED(memoryLimit(pid)), "no memory limit to begin with");

    // A non-limit key on a running container with limits.memory unset.
    const env = await call(d, "PATCH", "/1.0/instances/lim", {
      body: { config: { "environment.FOO": "bar" } },
    });
    assert.equal(env.status, 200, `PATCH environment.FOO: ${env.text}`);
    await d.ok("config", "set", "lim", "environment.BAR=baz");
    const echoed = await must(d, "POST", "/1.0/instances/lim/exec", {
      body: {
        command: ["sh", "-c", "echo $FOO$BAR"],
        "record-output": true,
        "wait-for-websocket": false,
      },
    });
    const out = (echoed.body!.metadata as Op).metadata!.output as Record<string, string>;
    assert.equal((await call(d, "GET", out["1"])).text, "barbaz\n");

    // Set live: the kernel shows it; unset live: the limit is gone again.
    await must(d, "PATCH", "/1.0/instances/lim", {
      body: { config: { "limits.memory": "64MiB" } },
    });
    assert.equal(memoryLimit(pid), String(64 * 2 ** 20), "limits.memory=64MiB reached the cgroup");
    await d.ok("config", "unset", "lim", "limits.memory");
    assert.ok(UNLIMITED(memoryLimit(pid)), `unset lifts the limit (${memoryLimit(pid)})`);
    assert.equal((await configOf(d, "lim"))["limits.memory"], undefined);

    // Values out of range: 400, and neither the record nor the LXC config on disk changes.
    const bad: Record<string, string>[] = [
      { "limits.memory": "0%" },
      { "limits.memory": "1000EiB" },
      { "limits.processes": "99999999999999999999999" },
    ];
    for (const running of [true, false]) {
      if (!running) {
        await must(d, "PUT", "/1.0/instances/lim/state", { body: { action: "stop", force: true } });
      }
      for (const values of bad) {
        const what = `${JSON.stringify(values)} on a ${running ? "running" : "stopped"} container`;
        const onDisk = await config();
        const recorded = await configOf(d, "lim");
        assertClientError(
          await call(d, "PATCH", "/1.0/instances/lim", { body: { config: values } }),
          400,
          `PATCH ${what}`,
        );
        const cli = await d.cli(
          "config",
          "set",
          "lim",
          ...Object.entries(values).map(([k, v]) => `${k}=${v}`),
        );
        assert.notEqual(cli.code, 0, `config set ${what} fails`);
        assert.doesNotMatch(cli.stderr, /500|Internal/, `config set ${what}: ${cli.stderr}`);
        assert.equal(await config(), onDisk, `the LXC config is unchanged after ${what}`);
        assert.deepEqual(
          await configOf(d, "lim"),
          recorded,
          `the record is unchanged after ${what}`,
        );
      }
    }
    // Nothing bad was stored: the instance still starts.
    await must(d, "PUT", "/1.0/instances/lim/state", { body: { action: "start" } });
    assert.equal((await d.lxcState("lim")).state, "RUNNING");
  }));

Deno.test("a container killed while the daemon was down is not started again; one left running stays running", () =>
  withDaemon(async (d) => {
    await Promise.all([launch(d, "gone"), launch(d, "gone2"), launch(d, "kept")]);
    const kept = (await d.lxcState("kept")).pid;
    const power = async (name: string) => (await configOf(d, name))["volatile.last_state.power"];
    const lxcStop = (name: string) =>
      new Deno.Command("lxc-stop", { args: ["-P", d.lxcPath, "-n", name, "-k"] }).output();

    // Behind a cleanly stopped daemon, then behind a killed one.
    for (const [name, down] of [["gone", () => d.stop()], ["gone2", () => d.kill9()]] as const) {
      await down();
      assert.equal((await lxcStop(name)).code, 0);
      await d.spawn();
      assert.equal((await d.lxcState(name)).state, "STOPPED", `${name} was not started again`);
      assert.equal(await power(name), "STOPPED", `${name}'s stop is recorded`);
      const listed = (await instances(d)).find((i) => i.name === name);
      assert.equal(listed?.status, "Stopped");
      const k = await d.lxcState("kept");
      assert.equal(k.state, "RUNNING", "the container left running still runs");
      assert.equal(k.pid, kept, "and was not restarted");
      assert.equal(await power("kept"), "RUNNING");
    }
    // Another restart does not bring them back either.
    await d.stop();
    await d.spawn();
    assert.equal((await d.lxcState("gone")).state, "STOPPED");
    assert.equal((await d.lxcState("gone2")).state, "STOPPED");
    assert.equal((await d.lxcState("kept")).pid, kept);
  }));

Deno.test("deleting an instance removes its exec logs: a new instance of the same name has none", () =>
  withDaemon(async (d) => {
    await launch(d, "lg");
    const done = await must(d, "POST", "/1.0/instances/lg/exec", {
      body: { command: ["echo", "secret"], "record-output": true, "wait-for-websocket": false },
    });
    const out = (done.body!.metadata as Op).metadata!.output as Record<string, string>;
    assert.equal((await call(d, "GET", out["1"])).text, "secret\n");
    const logs = await must(d, "GET", "/1.0/instances/lg/logs");
    assert.ok((logs.body!.metadata as string[]).length >= 2, "the exec left its logs");
    assert.ok(existsSync(join(d.dir, "logs", "lg")));

    await must(d, "PUT", "/1.0/instances/lg/state", { body: { action: "stop", force: true } });
    await must(d, "DELETE", "/1.0/instances/lg");
    assert.equal(existsSync(join(d.dir, "logs", "lg")), false, "logs/lg went with the instance");

    await launch(d, "lg", false);
    const fresh = await must(d, "GET", "/1.0/instances/lg/logs");
    const execLogs = (fresh.body!.metadata as string[]).filter((u) => !u.endsWith("/lxc.log"));
    assert.deepEqual(execLogs, [], "the new lg has no exec logs (only LXC's own log, if any)");
    assert.equal((await call(d, "GET", out["1"])).status, 404, "the old log is not served");
  }));
