/**
 * The instance manager's orchestration against the in-memory test double (tests/memory_driver.ts):
 * what reaches the driver, what is stored, what is emitted. tests/ covers real LXC and QEMU.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, Conflict, InvalidState, PreconditionFailed } from "../contract/errors.ts";
import { type Core, createRequest, withCore } from "../tests/core_fixture.ts";
import { DEFAULT_STOP_TIMEOUT, type StateAction, type UpdateRequest } from "./instances.ts";
import { DELETING, RENAMING_TO, RESUME } from "./recovery.ts";

const POWER = "volatile.last_state.power";
const BOOT_ID = "volatile.last_state.boot_id";

/** Runs a state change (its check and its work). */
async function change(
  core: Core,
  name: string,
  action: StateAction,
  opts: { force?: boolean; timeout?: number } = {},
): Promise<void> {
  const work = await core.instances.prepareState(name, {
    action,
    force: opts.force ?? false,
    timeout: opts.timeout ?? -1,
  });
  await work();
}

/** A PUT body with the instance's current writable fields and `config` replaced. */
function putBody(core: Core, name: string, config: Record<string, string>): UpdateRequest {
  const cur = core.instances.get(name);
  return {
    config,
    devices: cur.devices,
    profiles: cur.profiles,
    description: cur.description,
  };
}

/** Makes the next `putInstance` throw, as a full disk would. */
function failNextPut(core: Core): void {
  const put = core.store.putInstance.bind(core.store);
  core.store.putInstance = () => {
    core.store.putInstance = put;
    throw new Error("database or disk is full");
  };
}

const actions = (core: Core) => core.lifecycle.map((e) => e.action);

// --- create ---

Deno.test("create stores the record from the image and emits instance-created", () =>
  withCore(async (core) => {
    const made = await core.instances.prepareCreate(
      createRequest("c1", { config: { "user.note": "hi" }, description: "web" }),
    )();
    const stored = core.instances.get("c1");
    assert.deepEqual(stored, made);
    assert.equal(stored.description, "web");
    assert.equal(stored.config["user.note"], "hi");
    assert.equal(stored.config["image.os"], "busybox");
    assert.equal(stored.config["volatile.base_image"], core.image.fingerprint);
    assert.equal(stored.config[POWER], "STOPPED");
    assert.deepEqual(core.driver.trace(), ["create c1"]);
    assert.ok(core.driver.storage.has("c1"));
    assert.deepEqual(core.lifecycle, [
      { action: "instance-created", source: "/1.0/instances/c1", context: { type: "container" } },
    ]);
  }));

Deno.test("create stores the volatile keys the driver returned", () =>
  withCore(async (core) => {
    core.driver.createChanges = { "volatile.idmap.current": '[{"Hostid":100000}]' };
    await core.instances.prepareCreate(createRequest("c1"))();
    assert.equal(core.instances.get("c1").config["volatile.idmap.current"], '[{"Hostid":100000}]');
  }));

Deno.test("create ignores volatile keys in the request", () =>
  withCore(async (core) => {
    await core.instances.prepareCreate(
      createRequest("c1", { config: { "volatile.uuid": "forged", "volatile.base_image": "x" } }),
    )();
    const config = core.instances.get("c1").config;
    assert.notEqual(config["volatile.uuid"], "forged");
    assert.equal(config["volatile.base_image"], core.image.fingerprint);
  }));

Deno.test("create of an existing name is a Conflict and touches no storage", () =>
  withCore(async (core) => {
    await core.create("c1");
    assert.throws(() => core.instances.prepareCreate(createRequest("c1")), Conflict);
    assert.deepEqual(core.driver.calls, []);
    assert.deepEqual([...core.driver.storage.keys()], ["c1"]);
  }));

Deno.test("create of a name whose create is still pending is a Conflict", () =>
  withCore(async (core) => {
    const first = core.instances.prepareCreate(createRequest("c1"));
    assert.throws(() => core.instances.prepareCreate(createRequest("c1")), Conflict);
    await first();
    assert.deepEqual(core.driver.trace(), ["create c1"]);
  }));

Deno.test("a failing driver create leaves no record and frees the name", () =>
  withCore(async (core) => {
    core.driver.failNext("create", new Error("boom"));
    await assert.rejects(core.instances.prepareCreate(createRequest("c1"))(), /boom/);
    assert.equal(core.store.getInstance("c1"), undefined);
    assert.deepEqual(core.lifecycle, []);
    await core.instances.prepareCreate(createRequest("c1"))();
    assert.ok(core.store.getInstance("c1"));
  }));

Deno.test("a failed store write after create deletes the new storage", () =>
  withCore(async (core) => {
    const work = core.instances.prepareCreate(createRequest("c1"));
    failNextPut(core);
    await assert.rejects(work(), /disk is full/);
    assert.deepEqual(core.driver.trace(), ["create c1", "delete c1"]);
    assert.equal(core.driver.storage.has("c1"), false);
    assert.equal(core.store.getInstance("c1"), undefined);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("create from an image of the other type is a BadRequest before any storage", () =>
  withCore((core) => {
    assert.throws(
      () =>
        core.instances.prepareCreate(
          createRequest("v1", { type: "virtual-machine", image: "busybox" }),
        ),
      BadRequest,
    );
    assert.deepEqual(core.vmDriver.calls, []);
    assert.deepEqual(core.driver.calls, []);
    return Promise.resolve();
  }));

Deno.test("create marks its image used", () =>
  withCore(async (core) => {
    const before = Date.now();
    await core.create("c1");
    const used = Date.parse(core.store.getImage(core.image.fingerprint)!.last_used_at);
    assert.ok(used >= before, `last_used_at ${used} should be at least ${before}`);
  }));

// --- state changes ---

Deno.test("start of a running instance is refused (409) before the driver", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await assert.rejects(
      change(core, "c1", "start"),
      (err: InvalidState) => err instanceof InvalidState && err.status === 409,
    );
    assert.deepEqual(core.driver.calls, []);
  }));

Deno.test("stop of a stopped instance is refused (409) before the driver", () =>
  withCore(async (core) => {
    await core.create("c1");
    await assert.rejects(
      change(core, "c1", "stop"),
      (err: InvalidState) => err instanceof InvalidState && err.status === 409,
    );
    assert.deepEqual(core.driver.calls, []);
  }));

Deno.test("a state change is checked again under the lock: the second of two starts is refused", () =>
  withCore(async (core) => {
    await core.create("c1");
    const start = { action: "start", force: false, timeout: -1 } as const;
    const first = await core.instances.prepareState("c1", start);
    const second = await core.instances.prepareState("c1", start);
    await first();
    await assert.rejects(second(), InvalidState);
    assert.deepEqual(core.driver.trace(), ["start c1"]);
  }));

Deno.test("a clean stop reaches the driver unforced with the default timeout and emits instance-shutdown", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "stop");
    assert.deepEqual(core.driver.called("stop").map((c) => c.args[0]), [
      { force: false, timeout: DEFAULT_STOP_TIMEOUT },
    ]);
    assert.equal(core.instances.get("c1").config[POWER], "STOPPED");
    assert.deepEqual(actions(core), ["instance-shutdown"]);
  }));

Deno.test("a forced stop reaches the driver forced with its timeout and emits instance-stopped", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "stop", { force: true, timeout: 5 });
    assert.deepEqual(core.driver.called("stop").map((c) => c.args[0]), [
      { force: true, timeout: 5 },
    ]);
    assert.deepEqual(actions(core), ["instance-stopped"]);
  }));

Deno.test("start stores the volatile keys the driver returned", () =>
  withCore(async (core) => {
    await core.create("c1");
    core.driver.startChanges = { "volatile.last_state.idmap": "[shifted]" };
    await change(core, "c1", "start");
    const config = core.instances.get("c1").config;
    assert.equal(config["volatile.last_state.idmap"], "[shifted]");
    assert.equal(config[POWER], "RUNNING");
    assert.deepEqual(actions(core), ["instance-started"]);
  }));

Deno.test("start records the host boot it happened in", () =>
  withCore(async (core) => {
    core.instances.bootId = "boot-1";
    await core.create("c1");
    await change(core, "c1", "start");
    assert.equal(core.instances.get("c1").config[BOOT_ID], "boot-1");
  }));

Deno.test("stopping an ephemeral instance deletes it", () =>
  withCore(async (core) => {
    await core.createRunning("e1", { ephemeral: true });
    await change(core, "e1", "stop");
    assert.deepEqual(core.driver.trace(), ["stop e1", "delete e1"]);
    assert.equal(core.store.getInstance("e1"), undefined);
    assert.deepEqual(actions(core), ["instance-shutdown", "instance-deleted"]);
  }));

Deno.test("restart stops and starts the instance and emits only instance-restarted", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "restart");
    assert.deepEqual(core.driver.trace(), ["stop c1", "start c1"]);
    assert.equal(core.instances.get("c1").config[POWER], "RUNNING");
    assert.equal(core.instances.get("c1").config[RESUME], undefined);
    assert.deepEqual(actions(core), ["instance-restarted"]);
  }));

Deno.test("a restart whose start fails leaves no resume intent in the record", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    core.driver.failNext("start");
    await assert.rejects(change(core, "c1", "restart"), /start failed/);
    assert.equal(core.instances.get("c1").config[RESUME], undefined);
  }));

Deno.test("freeze and unfreeze keep the recorded power in step", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "freeze");
    assert.equal(core.instances.get("c1").config[POWER], "FROZEN");
    await change(core, "c1", "unfreeze");
    assert.equal(core.instances.get("c1").config[POWER], "RUNNING");
    assert.deepEqual(core.driver.trace(), ["freeze c1", "unfreeze c1"]);
    assert.deepEqual(actions(core), ["instance-paused", "instance-resumed"]);
  }));

// --- updates ---

Deno.test("PATCH merges against the current record: concurrent patches of distinct keys both land", () =>
  withCore(async (core) => {
    await core.create("c1");
    await Promise.all([
      core.instances.patch("c1", { config: { "user.a": "1" } }),
      core.instances.patch("c1", { config: { "user.b": "2" } }),
    ]);
    const config = core.instances.get("c1").config;
    assert.equal(config["user.a"], "1");
    assert.equal(config["user.b"], "2");
  }));

Deno.test("PUT replaces the writable fields and keeps the volatile keys", () =>
  withCore(async (core) => {
    const before = await core.create("c1", { config: { "user.old": "x" } });
    await core.instances.update("c1", {
      config: { "user.new": "y" },
      devices: {},
      profiles: [],
      description: "replaced",
    });
    const after = core.instances.get("c1");
    assert.equal(after.config["user.old"], undefined);
    assert.equal(after.config["user.new"], "y");
    assert.equal(after.description, "replaced");
    assert.deepEqual(after.profiles, []);
    for (const [k, v] of Object.entries(before.config)) {
      if (k.startsWith("volatile.")) assert.equal(after.config[k], v, k);
    }
    assert.deepEqual(actions(core), ["instance-updated"]);
  }));

Deno.test("PUT cannot change volatile keys", () =>
  withCore(async (core) => {
    const before = await core.create("c1");
    await core.instances.update(
      "c1",
      putBody(core, "c1", { "volatile.uuid": "forged", "volatile.extra": "x" }),
    );
    const config = core.instances.get("c1").config;
    assert.equal(config["volatile.uuid"], before.config["volatile.uuid"]);
    assert.equal(config["volatile.extra"], undefined);
  }));

Deno.test("changing a non-live key of a running instance is refused and changes nothing", () =>
  withCore(async (core) => {
    const before = await core.createRunning("c1");
    await assert.rejects(
      core.instances.patch("c1", { config: { "security.privileged": "true" } }),
      (err: Error) => err instanceof InvalidState && /security\.privileged/.test(err.message),
    );
    assert.deepEqual(core.instances.get("c1"), before);
    assert.deepEqual(core.driver.calls, []);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("changing the devices of a running instance is refused", () =>
  withCore(async (core) => {
    const before = await core.createRunning("c1");
    await assert.rejects(
      core.instances.patch("c1", { devices: { root: { type: "none" } } }),
      InvalidState,
    );
    assert.deepEqual(core.instances.get("c1"), before);
  }));

Deno.test("changing limits of a running container applies only the changed limits keys", () =>
  withCore(async (core) => {
    await core.createRunning("c1", { config: { "limits.cpu": "1", "limits.memory": "64MiB" } });
    await core.instances.patch("c1", { config: { "limits.memory": "128MiB", "user.x": "1" } });
    assert.deepEqual(core.driver.called("applyLimits").map((c) => c.args[0]), [
      ["limits.memory"],
    ]);
    assert.equal(core.driver.storage.get("c1")!.limits["limits.memory"], "128MiB");
    assert.equal(core.instances.get("c1").config["limits.memory"], "128MiB");
  }));

Deno.test("removing a limit of a running container applies that key", () =>
  withCore(async (core) => {
    await core.createRunning("c1", { config: { "limits.cpu": "1", "limits.memory": "64MiB" } });
    await core.instances.update("c1", putBody(core, "c1", { "limits.cpu": "1" }));
    assert.deepEqual(core.driver.called("applyLimits").map((c) => c.args[0]), [
      ["limits.memory"],
    ]);
    assert.equal(core.instances.get("c1").config["limits.memory"], undefined);
  }));

Deno.test("changing limits of a stopped instance stores them without applying them", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.instances.patch("c1", { config: { "limits.memory": "128MiB" } });
    assert.deepEqual(core.driver.called("applyLimits"), []);
    assert.equal(core.instances.get("c1").config["limits.memory"], "128MiB");
  }));

Deno.test("a failed live limit change stores nothing", () =>
  withCore(async (core) => {
    const before = await core.createRunning("c1", { config: { "limits.memory": "64MiB" } });
    core.driver.failNext("applyLimits");
    await assert.rejects(core.instances.patch("c1", { config: { "limits.memory": "128MiB" } }));
    assert.deepEqual(core.instances.get("c1"), before);
  }));

Deno.test("changing limits of a frozen container is refused and changes nothing", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "freeze");
    const before = core.instances.get("c1");
    core.reset();
    await assert.rejects(
      core.instances.patch("c1", { config: { "limits.memory": "128MiB" } }),
      /frozen/,
    );
    assert.deepEqual(core.instances.get("c1"), before);
    assert.deepEqual(core.driver.calls, []);
  }));

Deno.test("an update with a stale If-Match is refused and changes nothing", () =>
  withCore(async (core) => {
    const before = await core.create("c1");
    const etag = core.instances.etag(before);
    await core.instances.patch("c1", { config: { "user.a": "1" } }, `"${etag}"`);
    const current = core.instances.get("c1");
    await assert.rejects(
      core.instances.patch("c1", { config: { "user.b": "2" } }, `"${etag}"`),
      PreconditionFailed,
    );
    assert.deepEqual(core.instances.get("c1"), current);
  }));

// --- rename ---

Deno.test("rename moves the storage, the record, its snapshots and its exec logs", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.snapshots.prepareCreate("c1", { name: "s0" })();
    await Deno.mkdir(core.paths.instanceLogs("c1"));
    await Deno.writeTextFile(join(core.paths.instanceLogs("c1"), "exec.stdout"), "out");
    core.reset();
    await (await core.instances.prepareRename("c1", "c2"))();
    assert.deepEqual(core.driver.trace(), ["rename c1"]);
    assert.deepEqual([...core.driver.storage.keys()], ["c2"]);
    assert.equal(core.store.getInstance("c1"), undefined);
    assert.equal(core.instances.get("c2").config[RENAMING_TO], undefined);
    assert.deepEqual(core.store.listSnapshots("c2").map((s) => s.name), ["s0"]);
    assert.ok(existsSync(join(core.paths.instanceLogs("c2"), "exec.stdout")));
    assert.equal(existsSync(core.paths.instanceLogs("c1")), false);
    assert.deepEqual(core.lifecycle, [
      { action: "instance-renamed", source: "/1.0/instances/c2", context: { old_name: "c1" } },
    ]);
  }));

Deno.test("rename of a running instance is refused before any storage moves", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await assert.rejects(core.instances.prepareRename("c1", "c2"), InvalidState);
    assert.deepEqual(core.driver.calls, []);
    assert.ok(core.store.getInstance("c1"));
    // The refused rename does not keep the new name claimed.
    await core.create("c2");
  }));

Deno.test("rename to a taken name is a Conflict", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.create("c2");
    await assert.rejects(core.instances.prepareRename("c1", "c2"), Conflict);
    assert.deepEqual(core.driver.calls, []);
  }));

Deno.test("a failed storage rename keeps the record under its name without the rename intent", () =>
  withCore(async (core) => {
    const before = await core.create("c1");
    core.driver.failNext("rename");
    await assert.rejects((await core.instances.prepareRename("c1", "c2"))());
    assert.deepEqual(core.instances.get("c1"), before);
    assert.equal(core.store.getInstance("c2"), undefined);
  }));

// --- delete ---

Deno.test("delete removes the storage, the record, its snapshots and its exec logs", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.snapshots.prepareCreate("c1", { name: "s0" })();
    await Deno.mkdir(core.paths.instanceLogs("c1"));
    core.reset();
    await (await core.instances.prepareDelete("c1"))();
    assert.deepEqual(core.driver.trace(), ["delete c1"]);
    assert.equal(core.driver.storage.has("c1"), false);
    assert.equal(core.store.getInstance("c1"), undefined);
    assert.deepEqual(core.store.listSnapshots("c1"), []);
    assert.equal(existsSync(core.paths.instanceLogs("c1")), false);
    assert.deepEqual(actions(core), ["instance-deleted"]);
  }));

Deno.test("delete of a running instance is refused before the driver", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await assert.rejects(core.instances.prepareDelete("c1"), InvalidState);
    assert.deepEqual(core.driver.calls, []);
    assert.ok(core.store.getInstance("c1"));
  }));

Deno.test("a failed storage delete keeps the record without the delete intent", () =>
  withCore(async (core) => {
    const before = await core.create("c1");
    core.driver.failNext("delete");
    await assert.rejects((await core.instances.prepareDelete("c1"))());
    assert.deepEqual(core.instances.get("c1"), before);
    assert.equal(core.instances.get("c1").config[DELETING], undefined);
  }));

// --- exec and files ---

const EXEC = { command: ["env"], environment: {} };
const PIPED = { interactive: false };

Deno.test("prepareExec refuses a stopped instance before any work", () =>
  withCore(async (core) => {
    await core.create("c1");
    await assert.rejects(core.instances.prepareExec("c1", EXEC, PIPED), /is not running/);
    assert.deepEqual(core.driver.calls, []);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("prepareExec refuses a frozen instance before any work", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "freeze");
    core.reset();
    await assert.rejects(core.instances.prepareExec("c1", EXEC, PIPED), /is frozen/);
    assert.deepEqual(core.driver.calls, []);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("exec gets the instance's environment.* keys, overridden by the request's", () =>
  withCore(async (core) => {
    await core.createRunning("c1", {
      config: { "environment.A": "1", "environment.B": "2", "user.C": "no" },
    });
    const start = await core.instances.prepareExec(
      "c1",
      { command: ["env"], environment: { B: "3", D: "4" } },
      PIPED,
    );
    const proc = await start();
    assert.equal(await new Response(proc.stdout).text(), "A=1\nB=3\nD=4\n");
    assert.equal(await proc.status, 0);
    assert.deepEqual(actions(core), ["instance-exec"]);
  }));

Deno.test("file access refuses a frozen instance before the driver", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "freeze");
    core.reset();
    await assert.rejects(core.instances.fileStat("c1", "/etc/hostname"), /is frozen/);
    assert.deepEqual(core.driver.calls, []);
  }));

/** Whether `p` settles (either way) within `ms`. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  p.then(() => settled = true, () => settled = true);
  await new Promise((r) => setTimeout(r, ms));
  return settled;
}

/** Holds c1's lock until the returned function is called, then stops c1 under it. */
function stopUnderLock(core: Core): { release: () => void; done: Promise<void> } {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const done = core.instances.locks.run("c1", async () => {
    await held;
    await core.driver.stop(core.instances.get("c1"), { force: true, timeout: 0 });
  });
  return { release, done };
}

Deno.test("exec waits for a state change under way and checks the instance after it", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    const stop = stopUnderLock(core);
    const exec = core.instances.prepareExec("c1", EXEC, PIPED);
    assert.equal(await settledWithin(exec, 20), false, "no answer while the lock is held");
    stop.release();
    await stop.done;
    await assert.rejects(exec, /"c1" is not running/);
    assert.deepEqual(core.driver.called("exec"), []);
    assert.equal(core.instances.locks.busy("c1"), false);
  }));

Deno.test("a running command does not hold the instance's lock", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    const proc = await (await core.instances.prepareExec("c1", EXEC, PIPED))();
    assert.equal(core.instances.locks.busy("c1"), false);
    await proc.status;
  }));

Deno.test("file access waits for a state change under way and checks the instance after it", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "freeze");
    core.reset();
    let release!: () => void;
    const held = new Promise<void>((r) => release = r);
    const unfreeze = core.instances.locks.run("c1", async () => {
      await held;
      await core.driver.unfreeze(core.instances.get("c1"));
    });
    const stat = core.instances.fileStat("c1", "/etc/hostname");
    assert.equal(await settledWithin(stat, 20), false, "no answer while the lock is held");
    release();
    await unfreeze;
    await stat; // thawed by then: no longer refused as frozen
    assert.equal(core.driver.called("files.stat").length, 1);
  }));

// --- reconcile at start-up ---

Deno.test("reconcile starts a stopped instance with boot.autostart=true", () =>
  withCore(async (core) => {
    await core.create("c1", { config: { "boot.autostart": "true" } });
    await core.instances.reconcile();
    assert.deepEqual(core.driver.trace(), ["start c1"]);
    assert.equal(core.instances.get("c1").config[POWER], "RUNNING");
  }));

Deno.test("reconcile records the stop of an instance that died while the host stayed up", () =>
  withCore(async (core) => {
    core.instances.bootId = "boot-1";
    await core.createRunning("c1");
    core.driver.setPower("c1", "Stopped");
    await core.instances.reconcile();
    assert.deepEqual(core.driver.calls, []);
    assert.equal(core.instances.get("c1").config[POWER], "STOPPED");
  }));

Deno.test("reconcile starts an instance that was running when the host rebooted", () =>
  withCore(async (core) => {
    core.instances.bootId = "boot-1";
    await core.createRunning("c1");
    core.driver.setPower("c1", "Stopped");
    core.instances.bootId = "boot-2";
    await core.instances.reconcile();
    assert.deepEqual(core.driver.trace(), ["start c1"]);
    assert.equal(core.instances.get("c1").config[BOOT_ID], "boot-2");
  }));

Deno.test("reconcile leaves a boot.autostart=false instance stopped after a host reboot", () =>
  withCore(async (core) => {
    core.instances.bootId = "boot-1";
    await core.createRunning("c1", { config: { "boot.autostart": "false" } });
    core.driver.setPower("c1", "Stopped");
    core.instances.bootId = "boot-2";
    await core.instances.reconcile();
    assert.deepEqual(core.driver.calls, []);
  }));

Deno.test("reconcile starts again an instance whose restart was interrupted", () =>
  withCore(async (core) => {
    core.instances.bootId = "boot-1";
    const inst = await core.create("c1", { config: { "boot.autostart": "false" } });
    core.store.putInstance({ ...inst, config: { ...inst.config, [RESUME]: "true" } });
    await core.instances.reconcile();
    assert.deepEqual(core.driver.trace(), ["start c1"]);
    assert.equal(core.instances.get("c1").config[RESUME], undefined);
    assert.equal(core.instances.get("c1").config[POWER], "RUNNING");
  }));

Deno.test("reconcile thaws an instance an interrupted snapshot left frozen", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    core.driver.setPower("c1", "Frozen");
    await core.instances.reconcile();
    assert.deepEqual(core.driver.trace(), ["unfreeze c1"]);
  }));

Deno.test("reconcile leaves an instance the user paused frozen", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    await change(core, "c1", "freeze");
    core.reset();
    await core.instances.reconcile();
    assert.deepEqual(core.driver.calls, []);
  }));

Deno.test("reconcile skips the instances of an unavailable driver", () =>
  withCore(async (core) => {
    await core.create("c1", { config: { "boot.autostart": "true" } });
    core.driver.setUnavailable("lxc-start not found");
    await core.instances.reconcile();
    assert.deepEqual(core.driver.calls, []);
    assert.deepEqual(core.log, ["instance c1: its container driver is unavailable"]);
  }));
