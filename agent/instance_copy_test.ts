/** Copies against the in-memory driver: what the copy gets, what it does not, and the refusals. */
import assert from "node:assert/strict";
import { BadRequest, Conflict, NotFound } from "../contract/errors.ts";
import { type Core, withCore } from "../tests/core_fixture.ts";
import { type CopyRequest, InstanceCopier } from "./instance_copy.ts";

function copier(core: Core): InstanceCopier {
  return new InstanceCopier(core.store, core.instances, core.drivers, core.events);
}

function req(name: string, source: string, more: Partial<CopyRequest> = {}): CopyRequest {
  return { name, source, instanceOnly: false, config: {}, devices: {}, ephemeral: false, ...more };
}

async function snapshot(core: Core, name: string, snap: string): Promise<void> {
  const { SnapshotManager } = await import("./snapshots.ts");
  const m = new SnapshotManager(core.store, core.instances, core.drivers, core.events);
  await m.prepareCreate(name, { name: snap })();
}

Deno.test("a copy has the source's files, config, devices, profiles and snapshots, and its own identity", () =>
  withCore(async (core) => {
    await core.create("a", { config: { "limits.memory": "64MiB", "user.x": "1" } });
    core.driver.writeFile("a", "/data", "one");
    await snapshot(core, "a", "s0");
    core.reset();
    const b = await copier(core).prepareCopy(req("b", "a", { config: { "user.y": "2" } }))();
    const a = core.instances.get("a");
    assert.equal(b.config["limits.memory"], "64MiB");
    assert.equal(b.config["user.x"], "1");
    assert.equal(b.config["user.y"], "2");
    assert.equal(b.config["volatile.base_image"], a.config["volatile.base_image"]);
    assert.notEqual(b.config["volatile.uuid"], a.config["volatile.uuid"]);
    assert.deepEqual(b.profiles, a.profiles);
    assert.equal(core.driver.readFile("b", "/data"), "one");
    assert.deepEqual(core.store.listSnapshots("b").map((s) => s.name), ["s0"]);
    // Independent afterwards.
    core.driver.writeFile("b", "/data", "two");
    assert.equal(core.driver.readFile("a", "/data"), "one");
    assert.deepEqual(core.lifecycle.map((e) => e.action), ["instance-created"]);
  }));

Deno.test("--instance-only leaves the snapshots; a copy of a snapshot takes its files and config", () =>
  withCore(async (core) => {
    await core.create("a", { config: { "user.v": "old" } });
    core.driver.writeFile("a", "/data", "then");
    await snapshot(core, "a", "s0");
    core.driver.writeFile("a", "/data", "now");
    await core.instances.patch("a", { config: { "user.v": "new" } });
    const only = await copier(core).prepareCopy(req("b", "a", { instanceOnly: true }))();
    assert.deepEqual(core.store.listSnapshots(only.name), []);
    assert.equal(core.driver.readFile("b", "/data"), "now");
    const fromSnap = await copier(core).prepareCopy(req("c", "a/s0"))();
    assert.equal(fromSnap.config["user.v"], "old");
    assert.equal(core.driver.readFile("c", "/data"), "then");
    assert.deepEqual(core.store.listSnapshots("c"), []);
  }));

Deno.test("a running container is frozen while it is copied, and runs on after", () =>
  withCore(async (core) => {
    await core.createRunning("a");
    await copier(core).prepareCopy(req("b", "a"))();
    assert.deepEqual(core.driver.trace().filter((t) => !t.startsWith("status")), [
      "freeze a",
      "copy a",
      "unfreeze a",
    ]);
    assert.equal(core.driver.storage.get("a")!.power, "Running");
    assert.equal(core.driver.storage.get("b")!.power, "Stopped");
  }));

Deno.test("bad copies are refused before any work, and a failed copy leaves nothing", () =>
  withCore(async (core) => {
    await core.create("a");
    const c = copier(core);
    assert.throws(() => c.prepareCopy(req("a", "a")), Conflict);
    assert.throws(() => c.prepareCopy(req("b", "nope")), NotFound);
    assert.throws(() => c.prepareCopy(req("b", "a/nope")), NotFound);
    assert.throws(() => c.prepareCopy(req("bad_name", "a")), BadRequest);
    assert.throws(() => c.prepareCopy(req("b", "a", { profiles: ["nope"] })), NotFound);
    assert.throws(
      () => c.prepareCopy(req("b", "a", { config: { "limits.memory": "lots" } })),
      BadRequest,
    );
    core.driver.failNext("copy");
    await assert.rejects(c.prepareCopy(req("b", "a"))());
    assert.equal(core.store.getInstance("b"), undefined);
    assert.equal(core.driver.storage.has("b"), false);
    // The name is free again.
    await c.prepareCopy(req("b", "a"))();
    assert.ok(core.store.getInstance("b"));
  }));
