/**
 * Start-up recovery: a `kill -9` at any moment leaves nothing the next start does not clean up.
 * Work that changes storage and records in two steps leaves an intent in the record first
 * (`volatile.deleting`, `volatile.renaming_to`, `volatile.resume`), so the next start can finish
 * it or take it back;
 * storage with no record at all is what an interrupted create left, and is removed.
 */
import type { DriverRegistry } from "../drivers/registry.ts";
import type { InstanceType } from "../contract/schemas.ts";
import { messageOf } from "../contract/errors.ts";
import type { InstanceRecord, Store } from "./store.ts";

/** Set on a record while its storage is being deleted. */
export const DELETING = "volatile.deleting";
/** Set on a record (to the new name) while its storage is being renamed. */
export const RENAMING_TO = "volatile.renaming_to";
/**
 * Set on a record while a running instance is stopped to be started again (restart, restore):
 * the next start brings it back up whatever else the record says.
 */
export const RESUME = "volatile.resume";

const TYPES: InstanceType[] = ["container", "virtual-machine"];

export async function recoverInstances(
  store: Store,
  drivers: DriverRegistry,
  log: (msg: string) => void,
): Promise<void> {
  for (const type of TYPES) {
    const driver = drivers.maybe(type);
    if (!driver?.info().available) continue;
    try {
      await recoverType(store, type, log, driver);
    } catch (err) {
      log(`recovery of ${type}s failed: ${messageOf(err)}`);
    }
  }
}

async function recoverType(
  store: Store,
  type: InstanceType,
  log: (msg: string) => void,
  driver: NonNullable<ReturnType<DriverRegistry["maybe"]>>,
): Promise<void> {
  let storage = new Set(await driver.storageNames());
  for (const inst of store.listInstances().filter((i) => i.type === type)) {
    if (inst.config[DELETING]) {
      await driver.delete(inst);
      store.deleteInstance(inst.name);
      log(`instance ${inst.name}: finished a delete that was interrupted`);
      continue;
    }
    const to = inst.config[RENAMING_TO];
    if (to !== undefined) {
      const moved = !storage.has(inst.name) && storage.has(to);
      const { [RENAMING_TO]: _, ...config } = inst.config;
      store.putInstance({ ...inst, config });
      if (moved) {
        store.renameInstance(inst.name, to);
        log(`instance ${inst.name}: finished a rename to "${to}" that was interrupted`);
      } else {
        log(`instance ${inst.name}: took back a rename to "${to}" that was interrupted`);
      }
    }
  }
  storage = new Set(await driver.storageNames());
  const records = store.listInstances().filter((i) => i.type === type);
  const names = new Set(store.listInstances().map((i) => i.name));
  for (const name of storage) {
    if (names.has(name)) continue;
    await driver.delete(orphan(name, type));
    log(`removed the storage of "${name}": an interrupted create left it without a record`);
  }
  for (const inst of records) {
    const snaps = store.listSnapshots(inst.name).map((s) => s.name);
    const report = await driver.recover(inst, snaps);
    for (const a of report.actions) log(`instance ${inst.name}: ${a}`);
    for (const s of report.missingSnapshots) {
      store.deleteSnapshot(inst.name, s);
      log(`instance ${inst.name}: dropped the record of snapshot "${s}": its storage is gone`);
    }
  }
}

/** A record standing for storage that has none, so the driver can delete it. */
function orphan(name: string, type: InstanceType): InstanceRecord {
  return {
    name,
    type,
    architecture: "",
    description: "",
    config: {},
    devices: {},
    profiles: [],
    ephemeral: false,
    created_at: "",
    last_used_at: "",
  };
}
