import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { LxcSnapshots } from "../drivers/lxc/snapshots.ts";
import type { PowerState } from "../contract/instance_state.ts";
import { DriverRegistry, type ProbedDriver } from "../drivers/registry.ts";
import { Runner } from "../drivers/runner.ts";
import { BadRequest, Conflict, NotFound } from "../contract/errors.ts";
import { EventBus } from "./events.ts";
import type { ImageStore } from "./images.ts";
import { InstanceManager } from "./instances.ts";
import {
  checkSnapshotName,
  NEVER,
  nextSnapshotName,
  parseExpiry,
  restoredInstance,
  SnapshotManager,
} from "./snapshots.ts";
import type { InstanceRecord, SnapshotRecord } from "./store.ts";
import { Store } from "./store.ts";
import { type Core, withCore } from "../tests/core_fixture.ts";
import { MemoryDriver } from "../tests/memory_driver.ts";
import { RESUME } from "./recovery.ts";

const instance: InstanceRecord = {
  name: "c1",
  type: "container",
  architecture: "x86_64",
  description: "before",
  config: {
    "limits.memory": "64MiB",
    "volatile.uuid": "u-1",
    "volatile.last_state.power": "RUNNING",
    "volatile.last_state.idmap": "[]",
  },
  devices: {},
  profiles: ["default"],
  ephemeral: false,
  created_at: "2024-01-01T00:00:00.000Z",
  last_used_at: "1970-01-01T00:00:00Z",
};

Deno.test("checkSnapshotName() allows what Incus allows, except names unsafe as directories", () => {
  for (const ok of ["snap0", "before upgrade", "v1.2", "été", "a:b", "-x"]) {
    assert.equal(checkSnapshotName(ok), ok);
  }
  for (
    const [bad, why] of [
      ["", /is empty/],
      ["a/b", /contains "\/"/],
      [".", /reserved/],
      ["..", /reserved/],
      ["a\nb", /control characters/],
      ["x".repeat(256), /255 bytes/],
    ] as const
  ) {
    assert.throws(() => checkSnapshotName(bad), (err: Error) => {
      assert.ok(err instanceof BadRequest);
      assert.match(err.message, why);
      return true;
    });
  }
});

Deno.test("nextSnapshotName() picks the snapN after the highest one taken", () => {
  assert.equal(nextSnapshotName([]), "snap0");
  assert.equal(nextSnapshotName(["snap0"]), "snap1");
  assert.equal(nextSnapshotName(["snap0", "snap3", "daily", "snapx"]), "snap4");
});

Deno.test("parseExpiry() takes RFC 3339 times, normalised to UTC, and zero or none as never", () => {
  for (const never of [null, undefined, "", NEVER, "0001-01-01T00:00:00.000Z"]) {
    assert.equal(parseExpiry(never), NEVER);
  }
  assert.equal(parseExpiry("2030-01-01T00:00:00+02:00"), "2029-12-31T22:00:00.000Z");
  assert.equal(parseExpiry("2021-03-23T17:38:37.753398689-04:00"), "2021-03-23T21:38:37.753Z");
  for (const bad of ["tomorrow", "2030-01-01", "2030-01-01T00:00:00"]) {
    assert.throws(() => parseExpiry(bad), BadRequest);
  }
});

Deno.test("restoredInstance() takes the snapshot's fields and the current volatile keys", () => {
  const snap: SnapshotRecord = {
    instance: "c1",
    name: "s0",
    architecture: "x86_64",
    description: "at snapshot time",
    config: {
      "limits.memory": "32MiB",
      "user.note": "old",
      "volatile.uuid": "stale",
      "volatile.last_state.idmap": "[snapshot map]",
    },
    devices: { eth0: { type: "none" } },
    profiles: [],
    ephemeral: true,
    created_at: "2024-02-01T00:00:00.000Z",
    expires_at: NEVER,
  };
  const next = restoredInstance(instance, snap);
  assert.deepEqual(next.config, {
    "limits.memory": "32MiB",
    "user.note": "old",
    "volatile.uuid": "u-1",
    "volatile.last_state.power": "RUNNING",
    // The restored rootfs is shifted as it was when the snapshot was taken.
    "volatile.last_state.idmap": "[snapshot map]",
  });
  assert.deepEqual(next.devices, { eth0: { type: "none" } });
  assert.deepEqual(next.profiles, []);
  assert.equal(next.description, "at snapshot time");
  assert.equal(next.ephemeral, true);
  assert.equal(next.name, "c1");
  assert.equal(next.created_at, instance.created_at);
});

/** Real snapshot storage (cp on a temp dir) that also logs each call. */
class LoggedSnapshots extends LxcSnapshots {
  constructor(dir: (name: string) => string, private calls: string[]) {
    const runner = new Runner();
    runner.onRun((argv) => calls.push(argv[0]));
    super(dir, runner);
  }
  override create(inst: InstanceRecord, snap: string): Promise<void> {
    this.calls.push(`snapshot.create ${snap}`);
    return super.create(inst, snap);
  }
  override restore(inst: InstanceRecord, snap: string): Promise<void> {
    this.calls.push(`snapshot.restore ${snap}`);
    return super.restore(inst, snap);
  }
}

/**
 * A driver that only tracks power state, with real snapshot storage: enough to check the
 * manager's bookkeeping and ordering. tests/snapshots_test.ts covers real containers.
 */
class PowerOnlyDriver {
  readonly type = "container" as const;
  calls: string[] = [];
  power: PowerState = "Stopped";
  readonly snapshots: LxcSnapshots;

  constructor(dir: (name: string) => string) {
    this.snapshots = new LoggedSnapshots(dir, this.calls);
  }

  info() {
    return { name: "stub", version: "", available: true, error: "" };
  }
  status(): Promise<PowerState> {
    return Promise.resolve(this.power);
  }
  #set(call: string, power: PowerState): Promise<void> {
    this.calls.push(call);
    this.power = power;
    return Promise.resolve();
  }
  freeze = () => this.#set("freeze", "Frozen");
  unfreeze = () => this.#set("unfreeze", "Running");
  stop = (_: InstanceRecord, o: { force: boolean }) =>
    this.#set(`stop force=${o.force}`, "Stopped");
  start = () => this.#set("start", "Running");
}

interface Fixture {
  manager: SnapshotManager;
  instances: InstanceManager;
  store: Store;
  driver: PowerOnlyDriver;
  rootfs: string;
  events: { action: string; source: string; context: Record<string, unknown> }[];
}

async function withManager(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "outpost-snapmgr-" });
  const store = new Store(join(base, "outpost.db"));
  try {
    const dir = (name: string) => join(base, "containers", name);
    const rootfs = join(dir("c1"), "rootfs");
    await Deno.mkdir(rootfs, { recursive: true });
    await Deno.writeTextFile(join(rootfs, "file"), "v1");
    store.putInstance(structuredClone(instance));
    const bus = new EventBus();
    const events: Fixture["events"] = [];
    bus.subscribe(["lifecycle"], (e) => events.push(e.metadata as Fixture["events"][0]));
    const driver = new PowerOnlyDriver(dir);
    const drivers = new DriverRegistry([driver as unknown as ProbedDriver]);
    const instances = new InstanceManager(store, {} as ImageStore, drivers, bus, () => {});
    const manager = new SnapshotManager(store, instances, drivers, bus);
    await fn({ manager, instances, store, driver, rootfs, events });
  } finally {
    store.close();
    await Deno.remove(base, { recursive: true });
  }
}

Deno.test("prepareCreate() refuses bad requests before any work starts", () =>
  withManager(async ({ manager, driver }) => {
    assert.throws(() => manager.prepareCreate("nope", { name: "s0" }), NotFound);
    assert.throws(() => manager.prepareCreate("c1", { name: "a/b" }), BadRequest);
    assert.throws(
      () => manager.prepareCreate("c1", { name: "s0", stateful: true }),
      /Stateful snapshots are not supported/,
    );
    assert.throws(
      () => manager.prepareCreate("c1", { name: "s0", expires_at: "soon" }),
      /Invalid expires_at "soon"/,
    );
    const work = manager.prepareCreate("c1", { name: "s0" });
    // A second request for a name still being taken is a conflict too.
    assert.throws(() => manager.prepareCreate("c1", { name: "s0" }), Conflict);
    await work();
    assert.throws(
      () => manager.prepareCreate("c1", { name: "s0" }),
      /Snapshot "s0" of instance "c1" already exists/,
    );
    assert.deepEqual(driver.calls, ["snapshot.create s0", "cp"]);
  }));

Deno.test("a snapshot records the instance's fields; a running one is frozen while copied", () =>
  withManager(async ({ manager, driver, events }) => {
    driver.power = "Running";
    const rec = await manager.prepareCreate("c1", {
      name: "",
      expires_at: "2030-01-01T00:00:00Z",
    })();
    assert.equal(rec.name, "snap0");
    assert.deepEqual(driver.calls, ["freeze", "snapshot.create snap0", "cp", "unfreeze"]);
    assert.equal(driver.power, "Running");
    assert.deepEqual(rec.config, instance.config);
    assert.equal(rec.description, "before");
    assert.deepEqual(rec.profiles, ["default"]);
    assert.equal(rec.expires_at, "2030-01-01T00:00:00.000Z");
    assert.deepEqual(manager.get("c1", "snap0"), rec);
    assert.deepEqual(events.at(-1), {
      action: "instance-snapshot-created",
      source: "/1.0/instances/c1/snapshots/snap0",
      context: {},
      requestor: null,
    });

    const second = await manager.prepareCreate("c1", { name: "" })();
    assert.equal(second.name, "snap1");
    assert.equal(second.expires_at, NEVER);
    assert.deepEqual(manager.list("c1").map((s) => s.name), ["snap0", "snap1"]);
  }));

Deno.test("restore of a running instance stops it, restores storage and config, starts it", () =>
  withManager(async ({ manager, instances, store, driver, rootfs, events }) => {
    await manager.prepareCreate("c1", { name: "s0" })();
    await Deno.writeTextFile(join(rootfs, "file"), "v2");
    const cur = instances.get("c1");
    store.putInstance({
      ...cur,
      description: "after",
      config: { ...cur.config, "limits.memory": "128MiB", "volatile.uuid": "u-2" },
    });
    driver.power = "Running";
    driver.calls.length = 0;
    events.length = 0;

    assert.throws(() => manager.prepareRestore("c1", "nope"), NotFound);
    assert.throws(() => manager.prepareRestore("c1", "other/s0"), BadRequest);
    const next = await manager.prepareRestore("c1", "c1/s0")(); // the stock client's form
    assert.deepEqual(driver.calls, ["stop force=true", "snapshot.restore s0", "cp", "start"]);
    assert.equal(await Deno.readTextFile(join(rootfs, "file")), "v1");
    const saved = instances.get("c1");
    assert.deepEqual(saved, next);
    assert.equal(saved.description, "before");
    assert.equal(saved.config["limits.memory"], "64MiB");
    assert.equal(saved.config["volatile.uuid"], "u-2");
    assert.equal(saved.config["volatile.last_state.power"], "RUNNING");
    assert.deepEqual(events.map((e) => e.action), [
      "instance-stopped",
      "instance-restored",
      "instance-started",
    ]);
    assert.deepEqual(events[1].context, { snapshot: "s0" });
    assert.equal(events[1].source, "/1.0/instances/c1");
  }));

Deno.test("restore of a stopped instance leaves it stopped", () =>
  withManager(async ({ manager, instances, driver, rootfs }) => {
    await manager.prepareCreate("c1", { name: "s0" })();
    await Deno.writeTextFile(join(rootfs, "file"), "v2");
    driver.calls.length = 0;
    await manager.prepareRestore("c1", "s0")();
    assert.deepEqual(driver.calls, ["snapshot.restore s0", "cp"]);
    assert.equal(instances.get("c1").config["volatile.last_state.power"], "STOPPED");
    assert.equal(await Deno.readTextFile(join(rootfs, "file")), "v1");
  }));

Deno.test("rename and delete update rows, storage and events", () =>
  withManager(async ({ manager, rootfs, events }) => {
    await manager.prepareCreate("c1", { name: "s0" })();
    await manager.prepareCreate("c1", { name: "s1" })();
    const snapDir = (s: string) => join(rootfs, "..", "snapshots", s);

    assert.throws(() => manager.prepareRename("c1", "s0", "s1"), Conflict);
    assert.throws(() => manager.prepareRename("c1", "gone", "s2"), NotFound);
    assert.throws(() => manager.prepareRename("c1", "s0", "a/b"), BadRequest);
    const renamed = await manager.rename("c1", "s0", "first");
    assert.equal(renamed.name, "first");
    assert.ok(existsSync(snapDir("first")));
    assert.equal(existsSync(snapDir("s0")), false);
    assert.deepEqual(events.at(-1), {
      action: "instance-snapshot-renamed",
      source: "/1.0/instances/c1/snapshots/first",
      context: { old_name: "s0" },
      requestor: null,
    });

    assert.throws(() => manager.prepareDelete("c1", "s0"), NotFound);
    await manager.prepareDelete("c1", "first")();
    assert.equal(existsSync(snapDir("first")), false);
    assert.deepEqual(manager.list("c1").map((s) => s.name), ["s1"]);
    assert.equal(events.at(-1)?.action, "instance-snapshot-deleted");
  }));

Deno.test("update() changes expiry and description; pruneExpired() deletes expired snapshots", () =>
  withManager(async ({ manager }) => {
    await manager.prepareCreate("c1", { name: "old", expires_at: "2020-01-01T00:00:00Z" })();
    await manager.prepareCreate("c1", { name: "keep" })();
    const updated = manager.update("c1", "keep", { description: "important" });
    assert.equal(updated.description, "important");
    assert.equal(updated.expires_at, NEVER);
    assert.equal(manager.get("c1", "keep").description, "important");

    assert.deepEqual(await manager.pruneExpired(), { pruned: ["c1/old"], failed: [] });
    assert.deepEqual(manager.list("c1").map((s) => s.name), ["keep"]);
  }));

Deno.test("snapshot work waits for the instance's lock", () =>
  withManager(async ({ manager, instances, driver }) => {
    let release!: () => void;
    const held = instances.locks.run("c1", () => new Promise<void>((r) => release = r));
    const taking = manager.prepareCreate("c1", { name: "s0" })();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(driver.calls, [], "nothing runs while the lock is held");
    release();
    await held;
    await taking;
    assert.deepEqual(driver.calls, ["snapshot.create s0", "cp"]);
  }));

// --- orchestration against the in-memory test double (tests/memory_driver.ts) ---

async function restore(core: Core, name: string, snap: string) {
  return await core.snapshots.prepareRestore(name, snap)();
}

Deno.test("a failed snapshot copy of a running instance thaws it and records nothing", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    core.driver.failNext("snapshots.create", new Error("no space"));
    await assert.rejects(core.snapshots.prepareCreate("c1", { name: "s0" })(), /no space/);
    assert.deepEqual(core.driver.trace(), ["freeze c1", "snapshots.create c1", "unfreeze c1"]);
    assert.equal(core.driver.storage.get("c1")!.power, "Running");
    assert.deepEqual(core.store.listSnapshots("c1"), []);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("a failed snapshot record write deletes the copied storage", () =>
  withCore(async (core) => {
    await core.create("c1");
    const work = core.snapshots.prepareCreate("c1", { name: "s0" });
    core.store.putSnapshot = () => {
      throw new Error("database or disk is full");
    };
    await assert.rejects(work(), /disk is full/);
    assert.deepEqual(core.driver.trace(), ["snapshots.create c1", "snapshots.delete c1"]);
    assert.equal(core.driver.storage.get("c1")!.snapshots.size, 0);
  }));

Deno.test("restore of a paused instance resumes it before stopping it", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await core.snapshots.prepareCreate("c1", { name: "s0" })();
    await (await core.instances.prepareState("c1", {
      action: "freeze",
      force: false,
      timeout: -1,
    }))();
    core.reset();
    await restore(core, "c1", "s0");
    assert.deepEqual(core.driver.trace(), [
      "unfreeze c1",
      "stop c1",
      "snapshots.restore c1",
      "start c1",
    ]);
    assert.deepEqual(core.driver.called("stop")[0].args[0], { force: true, timeout: -1 });
  }));

Deno.test("a restore whose start fails says so, keeps the restored files and no resume intent", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    core.driver.writeFile("c1", "/data", "v1");
    await core.snapshots.prepareCreate("c1", { name: "s0" })();
    core.driver.writeFile("c1", "/data", "v2");
    core.driver.failNext("start");
    await assert.rejects(restore(core, "c1", "s0"), /restored from "s0" but did not start again/);
    assert.equal(core.driver.readFile("c1", "/data"), "v1");
    assert.equal(core.instances.get("c1").config[RESUME], undefined);
  }));

Deno.test("a failed restore of a running instance leaves it running, and without a resume intent", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await core.snapshots.prepareCreate("c1", { name: "s0" })();
    core.driver.failNext("snapshots.restore", new Error("copy failed"));
    await assert.rejects(restore(core, "c1", "s0"), /copy failed/);
    assert.equal(await core.instances.status(core.instances.get("c1")), "Running");
    // The user stops it: the next start-up leaves it stopped.
    await (await core.instances.prepareState("c1", {
      action: "stop",
      force: false,
      timeout: -1,
    }))();
    core.reset();
    await core.instances.reconcile();
    assert.deepEqual(core.driver.calls, [], "the restore's resume intent outlived it");
  }));

Deno.test("a failed snapshot storage delete keeps the snapshot's record", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.snapshots.prepareCreate("c1", { name: "s0" })();
    core.driver.failNext("snapshots.delete");
    await assert.rejects(core.snapshots.prepareDelete("c1", "s0")());
    assert.ok(core.store.getSnapshot("c1", "s0"));
  }));

Deno.test("pruneExpired() reports a snapshot it could not delete and keeps its record", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.snapshots.prepareCreate("c1", { name: "old", expires_at: "2020-01-01T00:00:00Z" })();
    core.driver.failNext("snapshots.delete", new Error("busy"));
    assert.deepEqual(await core.snapshots.pruneExpired(), {
      pruned: [],
      failed: ["c1/old: busy"],
    });
    assert.ok(core.store.getSnapshot("c1", "old"));
  }));

Deno.test("snapshots of an instance whose driver has no snapshot storage are a BadRequest", () =>
  withCore(async (core) => {
    await core.create("c1");
    const drivers = new DriverRegistry([new MemoryDriver({ snapshots: false })]);
    const manager = new SnapshotManager(core.store, core.instances, drivers, core.events);
    assert.throws(() => manager.prepareCreate("c1", { name: "s0" }), BadRequest);
  }));

Deno.test("snapshots.expiry dates a snapshot taken without an expiry; the zero time keeps it", () =>
  withCore(async (core) => {
    await core.create("c1", { config: { "snapshots.expiry": "2d" } });
    const m = new SnapshotManager(core.store, core.instances, core.drivers, core.events);
    const before = Date.now();
    const dated = await m.prepareCreate("c1", { name: "s0" })();
    const in2d = Date.parse(dated.expires_at) - before;
    assert.ok(in2d > 2 * 86_400_000 - 60_000 && in2d <= 2 * 86_400_000 + 60_000, dated.expires_at);
    const kept = await m.prepareCreate("c1", { name: "s1", expires_at: NEVER })();
    assert.equal(kept.expires_at, NEVER);
  }));

Deno.test("takeScheduled() snapshots running instances whose schedule came due, stopped ones only when asked", () =>
  withCore(async (core) => {
    await core.createRunning("run", { config: { "snapshots.schedule": "0 * * * *" } });
    await core.create("stop", { config: { "snapshots.schedule": "0 * * * *" } });
    await core.create("stop2", {
      config: { "snapshots.schedule": "@hourly", "snapshots.schedule.stopped": "true" },
    });
    await core.createRunning("never");
    const m = new SnapshotManager(core.store, core.instances, core.drivers, core.events);
    const take = async (iso: string) => (await m.takeScheduled(new Date(iso))).taken.sort();
    assert.deepEqual(await take("2030-01-01T09:00:30Z"), ["run/snap0", "stop2/snap0"]);
    assert.deepEqual(await take("2030-01-01T09:58:30Z"), []);
    assert.deepEqual(await take("2030-01-01T10:00:20Z"), ["run/snap1", "stop2/snap1"]);
    assert.deepEqual(core.store.listSnapshots("stop"), []);
    assert.deepEqual(core.store.listSnapshots("never"), []);
    // The same minute again: nothing more.
    assert.deepEqual((await m.takeScheduled(new Date("2030-01-01T10:00:50Z"))).taken, []);
  }));
