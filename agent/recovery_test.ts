/**
 * Start-up recovery against the in-memory test double (tests/memory_driver.ts): the intents a
 * kill left in records are finished or taken back. tests/hostile_crash_test.ts kills a real daemon.
 */
import assert from "node:assert/strict";
import { type Core, withCore } from "../tests/core_fixture.ts";
import { DELETING, recoverInstances, RENAMING_TO } from "./recovery.ts";

const recover = (core: Core) => recoverInstances(core.store, core.drivers, (m) => core.log.push(m));

/** Adds `key=value` to an instance's stored config, as work a kill interrupted left it. */
function leaveIntent(core: Core, name: string, key: string, value: string): void {
  const inst = core.instances.get(name);
  core.store.putInstance({ ...inst, config: { ...inst.config, [key]: value } });
}

Deno.test("recovery finishes a delete a kill interrupted", () =>
  withCore(async (core) => {
    await core.create("c1");
    leaveIntent(core, "c1", DELETING, "true");
    await recover(core);
    assert.ok(core.driver.trace().includes("delete c1"));
    assert.equal(core.driver.storage.has("c1"), false);
    assert.equal(core.store.getInstance("c1"), undefined);
  }));

Deno.test("recovery finishes a rename whose storage had moved", () =>
  withCore(async (core) => {
    await core.create("c1");
    leaveIntent(core, "c1", RENAMING_TO, "c2");
    core.driver.storage.set("c2", core.driver.storage.get("c1")!);
    core.driver.storage.delete("c1");
    await recover(core);
    assert.equal(core.store.getInstance("c1"), undefined);
    assert.equal(core.instances.get("c2").config[RENAMING_TO], undefined);
    assert.ok(core.driver.storage.has("c2"));
  }));

Deno.test("recovery takes back a rename whose storage had not moved", () =>
  withCore(async (core) => {
    await core.create("c1");
    leaveIntent(core, "c1", RENAMING_TO, "c2");
    await recover(core);
    assert.equal(core.instances.get("c1").config[RENAMING_TO], undefined);
    assert.equal(core.store.getInstance("c2"), undefined);
    assert.deepEqual([...core.driver.storage.keys()], ["c1"]);
  }));

Deno.test("recovery removes storage that no record claims", () =>
  withCore(async (core) => {
    await core.create("c1");
    core.driver.addStorage("half-made");
    await recover(core);
    assert.deepEqual(core.driver.called("delete").map((c) => c.name), ["half-made"]);
    assert.deepEqual([...core.driver.storage.keys()], ["c1"]);
  }));

Deno.test("recovery drops the records of snapshots whose storage is gone", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.snapshots.prepareCreate("c1", { name: "kept" })();
    await core.snapshots.prepareCreate("c1", { name: "lost" })();
    core.driver.storage.get("c1")!.snapshots.delete("lost");
    await recover(core);
    assert.deepEqual(core.store.listSnapshots("c1").map((s) => s.name), ["kept"]);
  }));
