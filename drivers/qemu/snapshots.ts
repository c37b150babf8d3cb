/**
 * Snapshots of a VM as qcow2 internal snapshots of its `disk.qcow2` overlay.
 *
 * QEMU cannot rename an internal snapshot, so each one is taken under a unique tag
 * (`outpost-<uuid>`) and `snapshots.json` in the VM's dir maps snapshot names to tags: a rename
 * changes the map only. The map is replaced whole (written beside it, then renamed into place), and
 * a snapshot is taken before it is recorded there, so a kill at any moment leaves at worst a tag
 * with no name, which start-up recovery deletes. A UEFI VM's variable store is copied beside its
 * snapshot (`snapshots/<tag>/OVMF_VARS.fd`) and restored with it.
 *
 * A stopped VM's disk is worked on with `qemu-img`; a running (or paused) one's through QMP, which
 * snapshots the open disk atomically. Around a live snapshot the guest's filesystems are frozen
 * through its agent when it answers, so they are clean in the snapshot; without an agent the
 * snapshot is what a power cut would leave. Restores need the VM stopped.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { Conflict, InvalidState, messageOf, NotFound } from "../../contract/errors.ts";
import type { PowerState } from "../../contract/instance_state.ts";
import { entryNames, type InstanceSpec, type RecoveryReport } from "../driver.ts";
import type { Runner } from "../runner.ts";
import type { SnapshotAccess } from "../snapshots.ts";
import type { QgaClient } from "./qga.ts";

/** The file mapping snapshot names to internal tags, in the VM's dir. */
export const MAP_FILE = "snapshots.json";
/** The QEMU drive id of a VM's root disk (drivers/qemu/args.ts). */
const ROOT_DRIVE = "root";
const VARS = "OVMF_VARS.fd";
const TAG = /^outpost-[0-9a-f-]{36}$/;
/** Temp files a kill can leave in a VM's dir: a map or a variable store not yet renamed. */
const TEMP = /^\.(snapshots|vars)-[0-9a-f-]{36}(\.json)?$/;

const SnapshotMapFile = z.array(z.object({ name: z.string().min(1), tag: z.string().regex(TAG) }))
  .refine((entries) => new Set(entries.map((e) => e.name)).size === entries.length, {
    message: "a snapshot name is listed twice",
  });

export interface QemuSnapshotsOptions {
  /** The VM's directory. */
  dir: (name: string) => string;
  runner: Runner;
  /** The VM's power state: `qemu-img` only touches a stopped VM's disk, QMP a running one's. */
  status: (inst: InstanceSpec) => Promise<PowerState>;
  /** Runs a QMP command on a running or paused VM and resolves with its return value. */
  qmp: (inst: InstanceSpec, command: string, args?: Record<string, unknown>) => Promise<unknown>;
  /** The guest agent of a running VM if it answers promptly, to freeze its filesystems. */
  guestAgent?: (inst: InstanceSpec) => Promise<QgaClient | undefined>;
  log?: (msg: string) => void;
}

/** Which snapshots a copy of a VM keeps, and the one its disk is set to (see `finishCopy`). */
export interface CopyPlan {
  from?: { name: string; tag: string };
  keep: Map<string, string>;
}

export class QemuSnapshots implements SnapshotAccess {
  constructor(private opts: QemuSnapshotsOptions) {}

  #disk(name: string): string {
    return join(this.opts.dir(name), "disk.qcow2");
  }

  /** Where the UEFI variable store kept with the internal snapshot `tag` lives. */
  #varsPath(name: string, tag: string): string {
    return join(this.opts.dir(name), "snapshots", tag, VARS);
  }

  /** The snapshot names and their internal tags (none when the map is missing). */
  async #map(name: string): Promise<Map<string, string>> {
    const path = join(this.opts.dir(name), MAP_FILE);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return new Map();
      throw err;
    }
    let entries;
    try {
      entries = SnapshotMapFile.parse(JSON.parse(text));
    } catch (err) {
      throw new Error(`The snapshot map of VM "${name}" (${path}) is damaged: ${messageOf(err)}`);
    }
    return new Map(entries.map((e) => [e.name, e.tag]));
  }

  /** Replaces the map whole: written and synced beside it, then renamed over it. */
  async #writeMap(name: string, map: Map<string, string>): Promise<void> {
    const dir = this.opts.dir(name);
    const tmp = join(dir, `.snapshots-${crypto.randomUUID()}.json`);
    const entries = [...map].map(([name, tag]) => ({ name, tag }));
    try {
      await Deno.writeTextFile(tmp, JSON.stringify(entries, null, 2) + "\n", {
        createNew: true,
        mode: 0o600,
      });
      using f = await Deno.open(tmp);
      await f.sync();
      await Deno.rename(tmp, join(dir, MAP_FILE));
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
  }

  /** The internal snapshot tags in a stopped VM's disk. */
  async #diskTags(disk: string): Promise<string[]> {
    const argv = ["qemu-img", "info", "--output=json", "-f", "qcow2", disk];
    const info = JSON.parse((await this.opts.runner.run(argv)).stdout) as {
      snapshots?: { name: string }[];
    };
    return (info.snapshots ?? []).map((s) => s.name);
  }

  /** The internal snapshot tags in a running VM's root disk, as QEMU has them. */
  async #liveTags(inst: InstanceSpec): Promise<string[]> {
    const blocks = await this.opts.qmp(inst, "query-block") as {
      device: string;
      inserted?: { image?: { snapshots?: { name: string }[] } };
    }[];
    const root = blocks.find((b) => b.device === ROOT_DRIVE);
    return (root?.inserted?.image?.snapshots ?? []).map((s) => s.name);
  }

  /** Takes or deletes an internal snapshot of a running VM's root disk. */
  async #live(
    inst: InstanceSpec,
    command: "blockdev-snapshot-internal-sync" | "blockdev-snapshot-delete-internal-sync",
    tag: string,
  ): Promise<void> {
    await this.opts.qmp(inst, command, {
      device: ROOT_DRIVE,
      name: tag,
    });
  }

  async #img(...args: string[]): Promise<void> {
    await this.opts.runner.run(["qemu-img", "snapshot", ...args]);
  }

  /** The VM's power state; a VM whose disk is gone is refused, naming it. */
  async #status(inst: InstanceSpec): Promise<PowerState> {
    const status = await this.opts.status(inst);
    if (status === "Error") {
      throw new InvalidState(`The disk of VM "${inst.name}" is missing: ${this.#disk(inst.name)}`);
    }
    return status;
  }

  async create(inst: InstanceSpec, snap: string): Promise<void> {
    const map = await this.#map(inst.name);
    if (map.has(snap)) {
      throw new Conflict(`Storage for snapshot "${inst.name}/${snap}" already exists`);
    }
    const status = await this.#status(inst);
    const tag = `outpost-${crypto.randomUUID()}`;
    try {
      await this.#keepVars(join(this.opts.dir(inst.name), VARS), inst.name, tag);
      if (status === "Stopped") {
        await this.#img("-c", tag, this.#disk(inst.name));
      } else {
        await this.#guestFrozen(
          inst,
          status,
          () => this.#live(inst, "blockdev-snapshot-internal-sync", tag),
        );
      }
    } catch (err) {
      await this.#removeVars(inst.name, tag);
      throw err;
    }
    map.set(snap, tag);
    try {
      await this.#writeMap(inst.name, map);
    } catch (err) {
      await this.#deleteTag(inst, status, tag).catch(() => {});
      await this.#removeVars(inst.name, tag);
      throw err;
    }
  }

  /**
   * Runs `fn` with the guest's filesystems frozen when the VM runs and its agent answers. The
   * agent is optional: without it (or when it cannot freeze) `fn` runs all the same. A freeze that
   * was asked for is always thawed, even when it timed out (it may have happened after all).
   */
  async #guestFrozen<T>(inst: InstanceSpec, status: PowerState, fn: () => Promise<T>): Promise<T> {
    const qga = status === "Running" ? await this.opts.guestAgent?.(inst) : undefined;
    if (!qga) return await fn();
    try {
      await qga.execute("guest-fsfreeze-freeze", undefined, { timeoutMs: 20_000 });
    } catch (err) {
      this.opts.log?.(
        `VM ${inst.name}: guest filesystems not frozen for a snapshot: ${messageOf(err)}`,
      );
    }
    try {
      return await fn();
    } finally {
      await this.#thaw(inst, qga);
    }
  }

  async #thaw(inst: InstanceSpec, qga: QgaClient): Promise<void> {
    let last: unknown;
    for (let i = 0; i < 3; i++) {
      try {
        await qga.execute("guest-fsfreeze-thaw", undefined, { timeoutMs: 10_000 });
        return;
      } catch (err) {
        last = err;
      }
    }
    this.opts.log?.(
      `VM ${inst.name}: guest filesystems may still be frozen (thaw them with "guest-fsfreeze-thaw" or a restart): ${
        messageOf(last)
      }`,
    );
  }

  async restore(inst: InstanceSpec, snap: string): Promise<void> {
    const status = await this.#status(inst);
    if (status !== "Stopped") {
      throw new InvalidState(
        `VM "${inst.name}" is ${status.toLowerCase()}: stop it before restoring a snapshot`,
      );
    }
    const disk = this.#disk(inst.name);
    const tag = storedTag(inst.name, snap, await this.#map(inst.name), await this.#diskTags(disk));
    await this.#img("-a", tag, disk);
    await this.#restoreVars(inst.name, inst.name, tag);
  }

  /** Keeps the UEFI variable store `file` (if the VM has one) with `name`'s snapshot `tag`. */
  async #keepVars(file: string, name: string, tag: string): Promise<void> {
    if (!existsSync(file)) return;
    await Deno.mkdir(join(this.opts.dir(name), "snapshots", tag), { recursive: true, mode: 0o700 });
    await Deno.copyFile(file, this.#varsPath(name, tag));
  }

  /** Puts the variable store kept with `source`'s snapshot `tag` in place as `target`'s. */
  async #restoreVars(source: string, target: string, tag: string): Promise<void> {
    const kept = this.#varsPath(source, tag);
    if (!existsSync(kept)) return;
    const dir = this.opts.dir(target);
    const tmp = join(dir, `.vars-${crypto.randomUUID()}`);
    try {
      await Deno.copyFile(kept, tmp);
      await Deno.rename(tmp, join(dir, VARS));
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
  }

  /** Deletes a snapshot; one with no storage (not in the map, or not in the disk) simply goes. */
  async delete(inst: InstanceSpec, snap: string): Promise<void> {
    const map = await this.#map(inst.name);
    const tag = map.get(snap);
    if (!tag) return;
    const status = await this.opts.status(inst);
    if (status !== "Error") await this.#deleteTag(inst, status, tag);
    map.delete(snap);
    await this.#writeMap(inst.name, map);
    await this.#removeVars(inst.name, tag);
  }

  /** Deletes an internal snapshot from the disk if it is there. */
  async #deleteTag(inst: InstanceSpec, status: PowerState, tag: string): Promise<void> {
    if (status === "Stopped") {
      const disk = this.#disk(inst.name);
      if ((await this.#diskTags(disk)).includes(tag)) await this.#img("-d", tag, disk);
    } else if ((await this.#liveTags(inst)).includes(tag)) {
      await this.#live(inst, "blockdev-snapshot-delete-internal-sync", tag);
    }
  }

  async #removeVars(name: string, tag: string): Promise<void> {
    await Deno.remove(join(this.opts.dir(name), "snapshots", tag), { recursive: true }).catch(
      (err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      },
    );
  }

  /** Renames a snapshot in the map (its internal tag stays). */
  async rename(inst: InstanceSpec, from: string, to: string): Promise<void> {
    const map = await this.#map(inst.name);
    const tag = map.get(from);
    if (!tag) throw new NotFound(`Storage for snapshot "${inst.name}/${from}" is missing`);
    if (map.has(to)) throw new Conflict(`Storage for snapshot "${inst.name}/${to}" already exists`);
    map.delete(from);
    map.set(to, tag);
    await this.#writeMap(inst.name, map);
  }

  /**
   * Start-up recovery: temp files removed; for a stopped VM, map entries without a record and our
   * internal snapshots without a map entry (a create killed between the two) deleted, and entries
   * whose internal snapshot is gone dropped. A running VM's disk is left alone. Returns what it did
   * and which recorded snapshots have no storage.
   */
  async reconcile(inst: InstanceSpec, recorded: string[]): Promise<RecoveryReport> {
    const dir = this.opts.dir(inst.name);
    const actions: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        if (!TEMP.test(e.name)) continue;
        await Deno.remove(join(dir, e.name));
        actions.push(`removed ${e.name}`);
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return { actions, missingSnapshots: recorded };
      throw err;
    }
    const map = await this.#map(inst.name);
    if ((await this.opts.status(inst)) === "Stopped") {
      const disk = this.#disk(inst.name);
      const tags = new Set(await this.#diskTags(disk));
      let changed = false;
      for (const [snap, tag] of map) {
        if (recorded.includes(snap) && tags.has(tag)) continue;
        if (!recorded.includes(snap)) {
          if (tags.delete(tag)) await this.#img("-d", tag, disk);
          actions.push(`removed snapshot "${snap}" that had no record`);
        }
        await this.#removeVars(inst.name, tag);
        map.delete(snap);
        changed = true;
      }
      if (changed) await this.#writeMap(inst.name, map);
      const known = new Set(map.values());
      for (const tag of tags) {
        if (!TAG.test(tag) || known.has(tag)) continue;
        await this.#img("-d", tag, disk);
        actions.push(`removed internal snapshot ${tag} that had no snapshot name`);
      }
      for (const tag of await entryNames(join(dir, "snapshots"))) {
        if (!TAG.test(tag) || known.has(tag)) continue;
        await this.#removeVars(inst.name, tag);
        actions.push(`removed the UEFI variables of ${tag}, which had no snapshot`);
      }
    }
    return { actions, missingSnapshots: recorded.filter((s) => !map.has(s)) };
  }

  /** The internal tag of snapshot `snap` of VM `name` (NotFound when it has none). */
  async tagOf(name: string, snap: string): Promise<string> {
    const tag = (await this.#map(name)).get(snap);
    if (!tag) throw new NotFound(`Storage for snapshot "${name}/${snap}" is missing`);
    return tag;
  }

  /**
   * Checks what a copy of the stopped VM `source` takes (before anything is copied): the snapshot
   * `from` its disk is set to, and the snapshots it keeps. A snapshot with no storage is NotFound.
   */
  async planCopy(
    source: string,
    opts: { from?: string; snapshots: string[] },
  ): Promise<CopyPlan> {
    const plan: CopyPlan = { keep: new Map() };
    if (!opts.from && opts.snapshots.length === 0) return plan;
    const map = await this.#map(source);
    const tags = await this.#diskTags(this.#disk(source));
    if (opts.from) plan.from = { name: opts.from, tag: storedTag(source, opts.from, map, tags) };
    for (const snap of opts.snapshots) plan.keep.set(snap, storedTag(source, snap, map, tags));
    return plan;
  }

  /**
   * Finishes a copy of `source`'s dir into `target`'s (its disk copied whole, internal snapshots
   * and all): the disk set to the snapshot `plan.from` (and its UEFI variables), every internal
   * snapshot not kept deleted, the kept ones' variables copied and the map written.
   */
  async finishCopy(source: string, target: string, plan: CopyPlan): Promise<void> {
    const disk = this.#disk(target);
    if (plan.from) {
      await this.#img("-a", plan.from.tag, disk);
      await this.#restoreVars(source, target, plan.from.tag);
    }
    const kept = new Set(plan.keep.values());
    for (const tag of await this.#diskTags(disk)) {
      if (!kept.has(tag)) await this.#img("-d", tag, disk);
    }
    for (const tag of kept) await this.#keepVars(this.#varsPath(source, tag), target, tag);
    if (plan.keep.size > 0) await this.#writeMap(target, plan.keep);
  }
}

/** The tag of snapshot `snap` of VM `name`, checked to be in its disk (NotFound otherwise). */
function storedTag(name: string, snap: string, map: Map<string, string>, tags: string[]): string {
  const tag = map.get(snap);
  if (!tag || !tags.includes(tag)) {
    throw new NotFound(`Storage for snapshot "${name}/${snap}" is missing`);
  }
  return tag;
}
