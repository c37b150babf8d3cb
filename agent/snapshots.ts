/**
 * The snapshot manager: validates snapshot requests, keeps their records in the store, drives the
 * instance driver's snapshot storage and emits Incus lifecycle events. Snapshot work runs under
 * the instance's lock, so it never interleaves with a start, stop or delete of the same instance.
 */
import type { Driver } from "../drivers/driver.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { SnapshotAccess } from "../drivers/snapshots.ts";
import { BadRequest, Conflict, messageOf, NotFound } from "../contract/errors.ts";
import { instanceUrl, snapshotUrl } from "../contract/urls.ts";
import type { EventBus } from "./events.ts";
import type { InstanceManager } from "./instances.ts";
import type { InstanceRecord, SnapshotRecord, Store } from "./store.ts";
import { RESUME } from "./recovery.ts";
import { dueBetween, parseSchedule } from "./schedule.ts";
import { addExpiry } from "../contract/units.ts";

/** Go's zero time: what Incus reports for "never" (no expiry, never used). */
export const NEVER = "0001-01-01T00:00:00Z";

/** Config keys that describe the storage itself, so a restore takes them from the snapshot. */
const STORAGE_KEYS = ["volatile.last_state.idmap"];

export interface SnapshotCreateRequest {
  /** Empty: the next free `snapN`, as Incus names them. */
  name: string;
  /**
   * An RFC 3339 time; the zero time for no expiry; null or absent for the instance's
   * `snapshots.expiry` (none if it has none), as Incus reads them.
   */
  expires_at?: string | null;
  stateful?: boolean;
}

export interface SnapshotUpdateRequest {
  expires_at?: string | null;
  description?: string;
}

/**
 * Snapshot names follow Incus: anything but `/` (it separates instance and snapshot), not empty.
 * Names are also directory names, so `.`, `..`, control characters and over-long names are refused.
 */
export function checkSnapshotName(name: string): string {
  const why = name === ""
    ? "it is empty"
    : name.includes("/")
    ? 'it contains "/"'
    : name === "." || name === ".."
    ? `"." and ".." are reserved`
    // deno-lint-ignore no-control-regex
    : /[\x00-\x1f\x7f]/.test(name)
    ? "it contains control characters"
    : new TextEncoder().encode(name).length > 255
    ? "it is longer than 255 bytes"
    : undefined;
  if (why) throw new BadRequest(`Invalid snapshot name "${name}": ${why}`);
  return name;
}

/** The next free `snapN` after the highest one taken (Incus's default `snapshots.pattern`). */
export function nextSnapshotName(taken: Iterable<string>): string {
  let next = 0;
  for (const name of taken) {
    const m = /^snap(\d+)$/.exec(name);
    if (m) next = Math.max(next, Number(m[1]) + 1);
  }
  return `snap${next}`;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/** Normalises an `expires_at` value: an ISO time in UTC, or {@link NEVER}. */
export function parseExpiry(value: string | null | undefined): string {
  if (value === null || value === undefined || value === "") return NEVER;
  const t = RFC3339.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(t)) {
    throw new BadRequest(
      `Invalid expires_at "${value}": use an RFC 3339 time such as 2030-01-01T00:00:00Z`,
    );
  }
  return t <= Date.parse(NEVER) ? NEVER : new Date(t).toISOString();
}

/** Whether a snapshot's expiry has passed at `now`. */
export function isExpired(snap: SnapshotRecord, now: Date): boolean {
  return snap.expires_at !== NEVER && Date.parse(snap.expires_at) <= now.getTime();
}

/**
 * The instance as a restore leaves it: the snapshot's writable fields, the current instance's
 * `volatile.*` keys, except those describing the storage, which now is the snapshot's.
 */
export function restoredInstance(cur: InstanceRecord, snap: SnapshotRecord): InstanceRecord {
  const config: Record<string, string> = {};
  for (const [k, v] of Object.entries(snap.config)) if (!k.startsWith("volatile.")) config[k] = v;
  for (const [k, v] of Object.entries(cur.config)) if (k.startsWith("volatile.")) config[k] = v;
  for (const k of STORAGE_KEYS) {
    if (snap.config[k] !== undefined) config[k] = snap.config[k];
    else delete config[k];
  }
  return {
    ...cur,
    architecture: snap.architecture,
    config,
    devices: structuredClone(snap.devices),
    profiles: [...snap.profiles],
    description: snap.description,
    ephemeral: snap.ephemeral,
  };
}

export class SnapshotManager {
  /** `instance/snap` keys of snapshots being taken, so a second request for one is a Conflict. */
  #creating = new Set<string>();

  constructor(
    private store: Store,
    private instances: InstanceManager,
    private drivers: DriverRegistry,
    private events: EventBus,
  ) {}

  /** The instance's snapshots, oldest first; NotFound for an unknown instance. */
  list(instance: string): SnapshotRecord[] {
    this.instances.get(instance);
    return this.store.listSnapshots(instance);
  }

  get(instance: string, snap: string): SnapshotRecord {
    this.instances.get(instance);
    const rec = this.store.getSnapshot(instance, snap);
    if (!rec) throw new NotFound(`Snapshot "${snap}" of instance "${instance}" not found`);
    return rec;
  }

  /** Checks a snapshot request synchronously and returns the work that takes it. */
  prepareCreate(instance: string, req: SnapshotCreateRequest): () => Promise<SnapshotRecord> {
    const inst = this.instances.get(instance);
    if (req.stateful) {
      throw new BadRequest("Stateful snapshots are not supported: take a stateless one");
    }
    const name = req.name === "" ? this.#nextName(instance) : checkSnapshotName(req.name);
    const key = `${instance}/${name}`;
    if (this.store.getSnapshot(instance, name) || this.#creating.has(key)) {
      throw new Conflict(`Snapshot "${name}" of instance "${instance}" already exists`);
    }
    // No expiry asked for: the instance's `snapshots.expiry`, if it has one.
    const expiry = this.instances.spec(inst).config["snapshots.expiry"];
    const expiresAt = (req.expires_at === undefined || req.expires_at === null) && expiry
      ? addExpiry(new Date(), expiry).toISOString()
      : parseExpiry(req.expires_at);
    const { driver, access } = this.#driver(inst);
    this.#creating.add(key);
    return () =>
      this.instances.locks.run(instance, async () => {
        try {
          const cur = this.instances.get(instance);
          // Freeze a running container while it is copied, as Incus does for plain directories,
          // so the copy is consistent. A VM's snapshot is taken atomically by QEMU, around a
          // freeze of the guest's filesystems through its agent (drivers/qemu/snapshots.ts).
          const freeze = cur.type === "container" && (await driver.status(cur)) === "Running";
          if (freeze) await driver.freeze(cur);
          try {
            await access.create(cur, name);
          } finally {
            if (freeze) await driver.unfreeze(cur);
          }
          const rec: SnapshotRecord = {
            instance,
            name,
            architecture: cur.architecture,
            description: cur.description,
            config: { ...cur.config },
            devices: structuredClone(cur.devices),
            profiles: [...cur.profiles],
            ephemeral: cur.ephemeral,
            created_at: new Date().toISOString(),
            expires_at: expiresAt,
          };
          try {
            this.store.putSnapshot(rec);
          } catch (err) {
            await access.delete(cur, name).catch(() => {});
            throw err;
          }
          this.events.lifecycle("instance-snapshot-created", snapshotUrl(instance, name));
          return rec;
        } finally {
          this.#creating.delete(key);
        }
      });
  }

  /**
   * Checks a restore synchronously and returns the work. A running instance is stopped (killed),
   * restored and started again. `snap` may be `SNAP` or `INSTANCE/SNAP` (the stock client's form).
   */
  prepareRestore(instance: string, snap: string): () => Promise<InstanceRecord> {
    const inst = this.instances.get(instance);
    const name = snap.startsWith(`${instance}/`) ? snap.slice(instance.length + 1) : snap;
    if (name.includes("/")) {
      throw new BadRequest(
        `Cannot restore "${snap}" into instance "${instance}": use one of its own snapshots`,
      );
    }
    this.get(instance, name);
    const { driver, access } = this.#driver(inst);
    return () =>
      this.instances.locks.run(instance, async () => {
        const cur = this.instances.get(instance);
        const rec = this.get(instance, name);
        const source = instanceUrl(instance);
        const status = await driver.status(cur);
        const wasRunning = status === "Running" || status === "Frozen";
        if (wasRunning) {
          // The intent goes first: a kill from here on leaves an instance the next start
          // brings back up (see agent/recovery.ts).
          cur.config[RESUME] = "true";
          this.store.putInstance(cur);
        }
        try {
          if (wasRunning) {
            if (status === "Frozen") await driver.unfreeze(cur);
            await driver.stop(cur, { force: true, timeout: -1 });
            this.events.lifecycle("instance-stopped", source);
          }
          await access.restore(cur, name);
        } catch (err) {
          if (wasRunning) {
            // Nothing was restored: the instance runs again as it was, and the intent goes (it
            // would otherwise start an instance its user stops later, at the next daemon start).
            await this.instances.startLocked(cur).catch(() => {});
            delete cur.config[RESUME];
            this.store.putInstance(cur);
          }
          throw err;
        }
        const next = restoredInstance(cur, rec);
        next.config["volatile.last_state.power"] = "STOPPED";
        if (wasRunning) next.config[RESUME] = "true";
        else delete next.config[RESUME];
        this.store.putInstance(next);
        this.events.lifecycle("instance-restored", source, { snapshot: name });
        if (wasRunning) {
          try {
            await this.instances.startLocked(next);
          } catch (err) {
            throw new Error(
              `Instance "${instance}" was restored from "${name}" but did not start again: ${
                messageOf(err)
              }`,
            );
          } finally {
            delete next.config[RESUME];
            this.store.putInstance(next);
          }
        }
        return next;
      });
  }

  /** Checks a delete synchronously and returns the work. */
  prepareDelete(instance: string, snap: string): () => Promise<void> {
    const inst = this.instances.get(instance);
    this.get(instance, snap);
    const { access } = this.#driver(inst);
    return () =>
      this.instances.locks.run(instance, async () => {
        this.get(instance, snap);
        await access.delete(this.instances.get(instance), snap);
        this.store.deleteSnapshot(instance, snap);
        this.events.lifecycle("instance-snapshot-deleted", snapshotUrl(instance, snap));
      });
  }

  /** Checks a rename synchronously and returns the work. */
  prepareRename(instance: string, from: string, to: string): () => Promise<SnapshotRecord> {
    const inst = this.instances.get(instance);
    this.get(instance, from);
    checkSnapshotName(to);
    if (this.store.getSnapshot(instance, to) || this.#creating.has(`${instance}/${to}`)) {
      throw new Conflict(`Snapshot "${to}" of instance "${instance}" already exists`);
    }
    const { access } = this.#driver(inst);
    return () =>
      this.instances.locks.run(instance, async () => {
        this.get(instance, from);
        if (this.store.getSnapshot(instance, to)) {
          throw new Conflict(`Snapshot "${to}" of instance "${instance}" already exists`);
        }
        await access.rename(this.instances.get(instance), from, to);
        this.store.renameSnapshot(instance, from, to);
        this.events.lifecycle("instance-snapshot-renamed", snapshotUrl(instance, to), {
          old_name: from,
        });
        return this.get(instance, to);
      });
  }

  /** Renames a snapshot (validation and work in one call). */
  async rename(instance: string, from: string, to: string): Promise<SnapshotRecord> {
    return await this.prepareRename(instance, from, to)();
  }

  /** Changes a snapshot's expiry and/or description (fields left out are kept). */
  update(instance: string, snap: string, req: SnapshotUpdateRequest): SnapshotRecord {
    const cur = this.get(instance, snap);
    const next: SnapshotRecord = {
      ...cur,
      expires_at: req.expires_at === undefined ? cur.expires_at : parseExpiry(req.expires_at),
      description: req.description ?? cur.description,
    };
    this.store.putSnapshot(next);
    this.events.lifecycle("instance-snapshot-updated", snapshotUrl(instance, snap));
    return next;
  }

  /**
   * Deletes every snapshot whose expiry has passed (call it periodically). Returns the
   * `instance/snap` names deleted and the failures, which the next round retries.
   */
  async pruneExpired(now = new Date()): Promise<{ pruned: string[]; failed: string[] }> {
    const pruned: string[] = [];
    const failed: string[] = [];
    for (const inst of this.instances.list()) {
      for (const snap of this.store.listSnapshots(inst.name)) {
        if (!isExpired(snap, now)) continue;
        const id = `${inst.name}/${snap.name}`;
        try {
          await this.prepareDelete(inst.name, snap.name)();
          pruned.push(id);
        } catch (err) {
          failed.push(`${id}: ${messageOf(err)}`);
        }
      }
    }
    return { pruned, failed };
  }

  /** When `takeScheduled` last looked (the minutes after it are checked next time). */
  #scheduleCheckedAt = new Date();

  /**
   * Takes the snapshots `snapshots.schedule` says are due since the last call (call it every
   * minute): of running instances, and of stopped ones with `snapshots.schedule.stopped=true`.
   * Returns the `instance/snap` names taken and the failures.
   */
  async takeScheduled(now = new Date()): Promise<{ taken: string[]; failed: string[] }> {
    const from = this.#scheduleCheckedAt;
    this.#scheduleCheckedAt = now;
    const taken: string[] = [];
    const failed: string[] = [];
    for (const inst of this.instances.list()) {
      const config = this.instances.spec(inst).config;
      const schedule = config["snapshots.schedule"]
        ? parseSchedule(config["snapshots.schedule"])
        : undefined;
      if (!schedule || !dueBetween(schedule, from, now)) continue;
      try {
        const status = await this.instances.status(inst);
        if (status !== "Running" && config["snapshots.schedule.stopped"] !== "true") continue;
        const snap = await this.prepareCreate(inst.name, { name: "" })();
        taken.push(`${inst.name}/${snap.name}`);
      } catch (err) {
        failed.push(`${inst.name}: ${messageOf(err)}`);
      }
    }
    return { taken, failed };
  }

  #nextName(instance: string): string {
    const taken = this.store.listSnapshots(instance).map((s) => s.name);
    for (const key of this.#creating) {
      if (key.startsWith(`${instance}/`)) taken.push(key.slice(instance.length + 1));
    }
    return nextSnapshotName(taken);
  }

  #driver(inst: InstanceRecord): { driver: Driver; access: SnapshotAccess } {
    const driver = this.drivers.get(inst.type);
    if (!driver.snapshots) {
      throw new BadRequest(`Snapshots of ${inst.type}s are not supported yet`);
    }
    return { driver, access: driver.snapshots };
  }
}
