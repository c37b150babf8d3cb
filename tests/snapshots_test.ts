/**
 * End to end: snapshots of real busybox containers through a real daemon, the CLI, the HTTP API
 * and, where it is installed, the stock LXD 5.0 `lxc` client.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { ApiError } from "../contract/client.ts";
import { sharedDaemon, type TestDaemon, uniqueName } from "./helpers.ts";

interface Snapshot {
  name: string;
  created_at: string;
  expires_at: string;
  stateful: boolean;
  size: number;
  config: Record<string, string>;
  profiles: string[];
}

/** The daemon the tests share, with the busybox image. */
const daemon = sharedDaemon((d) => d.importBusybox());

/** Runs `fn` with a container of its own, launched on the shared daemon and deleted afterwards. */
async function withContainer(fn: (d: TestDaemon, name: string) => Promise<void>): Promise<void> {
  const d = await daemon();
  const name = uniqueName("s");
  await d.ok("launch", "busybox", name);
  try {
    await fn(d, name);
  } finally {
    await d.cli("delete", "--force", name);
  }
}

async function sh(d: TestDaemon, name: string, script: string): Promise<string> {
  return await d.ok("exec", name, "--", "sh", "-c", script);
}

async function listed(d: TestDaemon, name: string): Promise<Snapshot[]> {
  return JSON.parse(await d.ok("snapshot", "list", name, "--format", "json"));
}

const snapDir = (d: TestDaemon, name: string, snap: string) =>
  join(d.lxcPath, name, "snapshots", snap);

/** An API call's HTTP status and Incus envelope, without throwing on errors. */
async function call(d: TestDaemon, method: string, path: string, body?: unknown) {
  const res = await d.api.fetch(method, path, body === undefined ? {} : { body });
  return {
    status: res.status,
    body: await res.json() as {
      type: string;
      error: string;
      error_code: number;
      metadata: { id: string };
    },
  };
}

Deno.test("restoring a running container brings its files back and it runs again", () =>
  withContainer(async (d, name) => {
    await sh(d, name, "echo one > /root/data; echo keep > /root/gone");
    await d.ok("snapshot", "create", name, "s0");
    await sh(d, name, "echo two > /root/data; rm /root/gone; echo new > /root/added");
    const before = await d.lxcState(name);
    assert.equal(before.state, "RUNNING");

    await d.ok("snapshot", "restore", name, "s0");
    const after = await d.lxcState(name);
    assert.equal(after.state, "RUNNING");
    assert.notEqual(after.pid, before.pid, "the container was restarted");
    assert.equal(await sh(d, name, "cat /root/data /root/gone"), "one\nkeep\n");
    assert.equal(await sh(d, name, "test -e /root/added && echo yes || echo no"), "no\n");
    // Still unprivileged: the restored rootfs kept its shifted ownership.
    const uid = Number(
      (await Deno.readTextFile(`/proc/${after.pid}/status`)).match(/^Uid:\s+(\d+)/m)![1],
    );
    assert.notEqual(uid, 0);
    assert.equal((await d.ok("exec", name, "--", "id", "-u")).trim(), "0");

    // A stopped container is restored and stays stopped.
    await sh(d, name, "echo three > /root/data");
    await d.ok("stop", name, "--force");
    await d.ok("snapshot", "restore", name, "s0");
    assert.equal((await d.lxcState(name)).state, "STOPPED");
    await d.ok("start", name);
    assert.equal(await sh(d, name, "cat /root/data"), "one\n");

    const bad = await d.cli("snapshot", "restore", name, "nope");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Snapshot "nope" of instance ".*" not found/);
  }));

/** The container the single-verb tests share. */
const NAME = uniqueName("s");
const BASE = `/1.0/instances/${NAME}/snapshots`;

/** The shared daemon, with the shared container running and without snapshots. */
async function fresh(): Promise<TestDaemon> {
  const d = await daemon();
  await d.ensureRunning(NAME, "busybox");
  for (const s of await snapshots(d)) {
    await d.api.run("DELETE", `${BASE}/${encodeURIComponent(s.name)}`);
  }
  return d;
}

/** The shared container's snapshots as the API lists them. */
async function snapshots(d: TestDaemon): Promise<Snapshot[]> {
  return await d.api.get<Snapshot[]>(`${BASE}?recursion=1`);
}

/** Takes a snapshot of the shared container through the API (quicker than the CLI). */
async function take(d: TestDaemon, name: string, expiresAt?: string): Promise<void> {
  await d.api.run("POST", BASE, { body: { name, expires_at: expiresAt ?? null } });
}

Deno.test("a snapshot taken without a name is called snap0 when the instance has none", async () => {
  const d = await fresh();
  await d.ok("snapshot", "create", NAME);
  assert.deepEqual((await listed(d, NAME)).map((s) => s.name), ["snap0"]);
});

Deno.test("taking a snapshot of a running container leaves it running", async () => {
  const d = await fresh();
  await d.ok("snapshot", "create", NAME, "s0");
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

Deno.test("snapshot create --expires-at sets the expiry; without it the expiry is the zero time", async () => {
  const d = await fresh();
  await d.ok("snapshot", "create", NAME, "s0");
  await d.ok("snapshot", "create", NAME, "s1", "--expires-at", "2099-01-01T00:00:00Z");
  const [s0, s1] = await listed(d, NAME);
  assert.equal(s0.expires_at, "0001-01-01T00:00:00Z");
  assert.equal(s1.expires_at, "2099-01-01T00:00:00.000Z");
});

Deno.test("snapshot list --format json lists snapshots in the order taken, stateless, size -1, with the instance's config", async () => {
  const d = await fresh();
  await take(d, "snap0");
  await take(d, "s1");
  const snaps = await listed(d, NAME);
  assert.deepEqual(snaps.map((s) => s.name), ["snap0", "s1"]);
  assert.equal(snaps[0].stateful, false);
  assert.equal(snaps[0].size, -1);
  assert.ok(snaps[0].config["volatile.base_image"], "the snapshot carries the instance config");
});

Deno.test("snapshot list prints a table of names, times taken, expiries and stateful flags", async () => {
  const d = await fresh();
  await take(d, "snap0");
  await take(d, "s1", "2099-01-01T00:00:00Z");
  const table = await d.ok("snapshot", "list", NAME);
  assert.match(table, /\|\s+NAME\s+\|\s+TAKEN AT\s+\|\s+EXPIRES AT\s+\|\s+STATEFUL\s+\|/);
  assert.match(table, /\| snap0 +\| \d{4}\/\d\d\/\d\d \d\d:\d\d UTC \|\s+\| NO +\|/);
  assert.match(table, /\| s1 +\| .* \| 2099\/01\/01 00:00 UTC \| NO +\|/);
});

Deno.test("snapshot show prints the snapshot as YAML", async () => {
  const d = await fresh();
  await take(d, "s1");
  assert.match(await d.ok("snapshot", "show", NAME, "s1"), /^name: s1$/m);
});

Deno.test("the API lists snapshots as URLs, and at recursion=1 as the objects the CLI shows", async () => {
  const d = await fresh();
  await take(d, "snap0");
  await take(d, "s1");
  assert.deepEqual(await d.api.get(BASE), [`${BASE}/snap0`, `${BASE}/s1`]);
  assert.deepEqual(await d.api.get<Snapshot[]>(`${BASE}?recursion=1`), await listed(d, NAME));
});

Deno.test("the API answers a snapshot's URL with the snapshot's object", async () => {
  const d = await fresh();
  await take(d, "snap0");
  await take(d, "s1", "2099-01-01T00:00:00Z");
  assert.deepEqual(await d.api.get(`${BASE}/s1`), (await snapshots(d))[1]);
});

Deno.test("a snapshot's storage is a full copy of the container's rootfs", async () => {
  const d = await fresh();
  await take(d, "snap0");
  assert.ok(existsSync(join(snapDir(d, NAME, "snap0"), "rootfs", "bin", "busybox")));
});

Deno.test("snapshot rename renames a snapshot in place and moves its storage", async () => {
  const d = await fresh();
  await take(d, "snap0");
  await take(d, "s1");
  await d.ok("snapshot", "rename", NAME, "snap0", "before upgrade");
  assert.deepEqual((await listed(d, NAME)).map((s) => s.name), ["before upgrade", "s1"]);
  assert.equal(existsSync(snapDir(d, NAME, "snap0")), false);
  assert.ok(existsSync(join(snapDir(d, NAME, "before upgrade"), "rootfs")));
});

Deno.test("POST to a snapshot's URL renames it as an operation", async () => {
  const d = await fresh();
  await take(d, "s1");
  const renamed = await call(d, "POST", `${BASE}/s1`, { name: "second" });
  assert.equal(renamed.status, 202);
  await d.api.wait(renamed.body.metadata.id);
  assert.deepEqual((await snapshots(d)).map((s) => s.name), ["second"]);
});

Deno.test("PATCH of a snapshot changes its expiry and description in place", async () => {
  const d = await fresh();
  await take(d, "second", "2099-01-01T00:00:00Z");
  const patched = await call(d, "PATCH", `${BASE}/second`, {
    expires_at: null,
    description: "keep me",
  });
  assert.equal(patched.status, 200);
  const second = await d.api.get<Snapshot & { description: string }>(`${BASE}/second`);
  assert.equal(second.description, "keep me");
  assert.equal(second.expires_at, "0001-01-01T00:00:00Z");
});

Deno.test("snapshot delete removes the snapshot and its storage, and the container keeps running", async () => {
  const d = await fresh();
  await take(d, "before upgrade");
  await d.ok("snapshot", "delete", NAME, "before upgrade");
  assert.deepEqual(await listed(d, NAME), []);
  assert.equal(existsSync(snapDir(d, NAME, "before upgrade")), false);
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

Deno.test("DELETE of a snapshot's URL removes it and its storage as an operation", async () => {
  const d = await fresh();
  await take(d, "second");
  const deleted = await call(d, "DELETE", `${BASE}/second`);
  assert.equal(deleted.status, 202);
  await d.api.wait(deleted.body.metadata.id);
  assert.deepEqual(await snapshots(d), []);
  assert.equal(existsSync(snapDir(d, NAME, "second")), false);
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

Deno.test("bad snapshot requests get Incus errors (400, 404, 409) and change nothing", () =>
  withContainer(async (d, name) => {
    await d.ok("snapshot", "create", name, "s0");
    await d.ok("snapshot", "create", name, "s1");
    const base = `/1.0/instances/${name}/snapshots`;
    const cases: [string, string, unknown, number, RegExp][] = [
      ["POST", base, { name: "s0" }, 409, /Snapshot "s0" of instance ".*" already exists/],
      ["POST", base, { name: "a/b" }, 400, /Invalid snapshot name "a\/b"/],
      ["POST", base, { name: "s9", stateful: true }, 400, /Stateful snapshots are not supported/],
      ["POST", base, { name: "s9", expires_at: "soon" }, 400, /Invalid expires_at "soon"/],
      ["POST", base, { name: "s9", bogus: 1 }, 400, /Unknown field "bogus"/],
      ["POST", "/1.0/instances/nope/snapshots", { name: "s0" }, 404, /Instance "nope" not found/],
      ["GET", "/1.0/instances/nope/snapshots", undefined, 404, /Instance "nope" not found/],
      ["GET", `${base}/nope`, undefined, 404, /Snapshot "nope" of instance ".*" not found/],
      ["DELETE", `${base}/nope`, undefined, 404, /Snapshot "nope" of instance ".*" not found/],
      ["POST", `${base}/nope`, { name: "x" }, 404, /Snapshot "nope" of instance ".*" not found/],
      ["POST", `${base}/s0`, { name: "s1" }, 409, /Snapshot "s1" of instance ".*" already exists/],
      ["PATCH", `${base}/s0`, { expires_at: "later" }, 400, /Invalid expires_at "later"/],
    ];
    for (const [method, path, body, status, message] of cases) {
      const res = await call(d, method, path, body);
      const what = `${method} ${path} ${JSON.stringify(body)}`;
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.type, "error", what);
      assert.equal(res.body.error_code, status, what);
      assert.match(res.body.error, message, what);
    }

    const cli: [string[], RegExp][] = [
      [["snapshot", "create", name, "s0"], /already exists/],
      [["snapshot", "create", "nope", "s0"], /Instance "nope" not found/],
      [["snapshot", "list", "nope"], /Instance "nope" not found/],
      [["snapshot", "delete", name, "nope"], /Snapshot "nope" of instance ".*" not found/],
      [["snapshot", "rename", name, "s0", "s1"], /already exists/],
      [["snapshot", "list", name, "--format", "xml"], /Unknown format "xml"/],
    ];
    for (const [args, message] of cli) {
      const r = await d.cli(...args);
      assert.equal(r.code, 1, `outpost ${args.join(" ")} should exit 1`);
      assert.match(r.stderr, message, `outpost ${args.join(" ")}`);
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
    }
    assert.deepEqual((await listed(d, name)).map((s) => s.name), ["s0", "s1"]);
  }));

Deno.test("deleting an instance removes its snapshots: rows and storage", () =>
  withContainer(async (d, name) => {
    await d.ok("snapshot", "create", name, "s0");
    await d.ok("snapshot", "create", name, "s1");
    assert.ok(existsSync(snapDir(d, name, "s1")));

    await d.ok("delete", "--force", name);
    assert.equal(existsSync(join(d.lxcPath, name)), false);
    await assert.rejects(
      d.api.get(`/1.0/instances/${name}/snapshots`),
      (err: ApiError) => err.status === 404,
    );
    const db = new DatabaseSync(join(d.dir, "outpost.db"), { readOnly: true });
    try {
      const row = db.prepare("SELECT count(*) AS n FROM snapshots WHERE instance = ?").get(name);
      assert.equal((row as { n: number }).n, 0);
    } finally {
      db.close();
    }
    // A new instance of the same name starts with no snapshots.
    await d.ok("init", "busybox", name);
    assert.deepEqual(await listed(d, name), []);
  }));

/** Whether the stock client is installed (computed at load: the test is skipped without it). */
const stockClient = (await new Deno.Command("sh", {
  args: ["-c", "command -v lxc"],
  stdout: "null",
  stderr: "null",
}).output()).success;

Deno.test({
  name: "the stock lxc client snapshots, lists, restores and deletes (skipped without lxc)",
  ignore: !stockClient,
  fn: () =>
    withContainer(async (d, name) => {
      const home = await Deno.makeTempDir({ prefix: "outpost-lxc-home-" });
      try {
        // A config.yml keeps the client from printing first-run hints.
        await Deno.mkdir(join(home, ".config", "lxc"), { recursive: true });
        await Deno.writeTextFile(join(home, ".config", "lxc", "config.yml"), "");
        const lxc = async (...args: string[]) => {
          const out = await new Deno.Command("lxc", {
            args,
            env: { LXD_DIR: d.dir, HOME: home },
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          }).output();
          const dec = new TextDecoder();
          const r = {
            code: out.code,
            stdout: dec.decode(out.stdout),
            stderr: dec.decode(out.stderr),
          };
          assert.equal(r.code, 0, `lxc ${args.join(" ")}: ${r.stderr}`);
          return r.stdout;
        };

        await sh(d, name, "echo one > /root/data");
        await lxc("snapshot", name, "s0");
        assert.ok(existsSync(join(snapDir(d, name, "s0"), "rootfs")));
        assert.deepEqual((await listed(d, name)).map((s) => s.name), ["s0"]);

        const info = await lxc("info", name);
        assert.match(info, /^Snapshots:$/m);
        assert.match(info, /^\| s0 +\| .+ \| +\| NO +\|$/m);

        await sh(d, name, "echo two > /root/data");
        await lxc("restore", name, "s0");
        assert.equal((await d.lxcState(name)).state, "RUNNING");
        assert.equal(await sh(d, name, "cat /root/data"), "one\n");

        await lxc("delete", `${name}/s0`);
        assert.deepEqual(await listed(d, name), []);
        assert.equal(existsSync(snapDir(d, name, "s0")), false);
      } finally {
        await Deno.remove(home, { recursive: true });
      }
    }),
});
