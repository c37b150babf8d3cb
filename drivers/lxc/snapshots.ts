/**
 * Snapshots of a container's rootfs as full copies: `<dir>/snapshots/<snap>/rootfs`.
 *
 * `cp -a --reflink=auto` keeps the shifted ownership, modes, symlinks, device nodes and xattrs, and
 * shares blocks where the filesystem can. Every copy is made under a temporary name inside the
 * container's dir and renamed into place, so a failed copy never leaves a half snapshot behind.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Conflict, NotFound } from "../../contract/errors.ts";
import type { InstanceSpec } from "../driver.ts";
import type { Runner } from "../runner.ts";
import type { SnapshotAccess } from "../snapshots.ts";

export class LxcSnapshots implements SnapshotAccess {
  constructor(private dir: (name: string) => string, private runner: Runner) {}

  /** The dir holding every snapshot of `name` (root-only: it holds copies of setuid files). */
  root(name: string): string {
    return join(this.dir(name), "snapshots");
  }

  /** Where the snapshot `snap` of `name` lives; its rootfs is `rootfs/` inside. */
  path(name: string, snap: string): string {
    return join(this.root(name), snap);
  }

  async create(inst: InstanceSpec, snap: string): Promise<void> {
    const target = this.path(inst.name, snap);
    if (existsSync(target)) {
      throw new Conflict(`Storage for snapshot "${inst.name}/${snap}" already exists`);
    }
    await Deno.mkdir(this.root(inst.name), { recursive: true, mode: 0o700 });
    const tmp = await this.#tempDir(inst.name, "snapshot");
    try {
      await this.#copy(join(this.dir(inst.name), "rootfs"), join(tmp, "rootfs"));
      await Deno.rename(tmp, target);
    } catch (err) {
      await removeTree(tmp);
      throw err;
    }
  }

  async restore(inst: InstanceSpec, snap: string): Promise<void> {
    const source = join(this.path(inst.name, snap), "rootfs");
    if (!existsSync(source)) {
      throw new NotFound(`Storage for snapshot "${inst.name}/${snap}" is missing`);
    }
    const rootfs = join(this.dir(inst.name), "rootfs");
    const tmp = await this.#tempDir(inst.name, "restore");
    try {
      await this.#copy(source, join(tmp, "rootfs"));
      // Swap: the current rootfs moves aside, the copy takes its place, then the old one goes.
      // A missing rootfs (damaged storage) is simply replaced.
      const moved = await Deno.rename(rootfs, join(tmp, "old")).then(() => true, (err) => {
        if (err instanceof Deno.errors.NotFound) return false;
        throw err;
      });
      try {
        await Deno.rename(join(tmp, "rootfs"), rootfs);
      } catch (err) {
        if (moved) await Deno.rename(join(tmp, "old"), rootfs);
        throw err;
      }
    } finally {
      await removeTree(tmp);
    }
  }

  async delete(inst: InstanceSpec, snap: string): Promise<void> {
    await removeTree(this.path(inst.name, snap));
  }

  async rename(inst: InstanceSpec, from: string, to: string): Promise<void> {
    const target = this.path(inst.name, to);
    if (existsSync(target)) {
      throw new Conflict(`Storage for snapshot "${inst.name}/${to}" already exists`);
    }
    try {
      await Deno.rename(this.path(inst.name, from), target);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new NotFound(`Storage for snapshot "${inst.name}/${from}" is missing`);
      }
      throw err;
    }
  }

  /**
   * Start-up: snapshot storage without a record is removed (a create killed after its copy);
   * returns what it removed and which recorded snapshots have no storage.
   */
  async reconcile(
    name: string,
    recorded: string[],
  ): Promise<{ removed: string[]; missing: string[] }> {
    const present = new Set<string>();
    try {
      for await (const e of Deno.readDir(this.root(name))) present.add(e.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const removed: string[] = [];
    for (const snap of present) {
      if (recorded.includes(snap)) continue;
      await removeTree(this.path(name, snap));
      removed.push(snap);
    }
    return { removed, missing: recorded.filter((s) => !present.has(s)) };
  }

  /** A fresh root-only dir beside the rootfs (same filesystem, so renames are atomic). */
  async #tempDir(name: string, what: string): Promise<string> {
    const tmp = join(this.dir(name), `.${what}-${crypto.randomUUID()}`);
    await Deno.mkdir(tmp, { mode: 0o700 });
    return tmp;
  }

  async #copy(from: string, to: string): Promise<void> {
    await this.runner.run(["cp", "-a", "--reflink=auto", "--", from, to]);
  }
}

async function removeTree(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/**
 * Start-up: a container dir's temp dirs left by a kill. A restore killed between moving the old
 * rootfs aside and moving the copy in is finished (the copy is whole by then); a restore killed
 * before is simply dropped, as are half snapshot copies, a half-unpacked image and a publish.
 */
export async function recoverTemp(dir: string): Promise<string[]> {
  const actions: string[] = [];
  const rootfs = join(dir, "rootfs");
  let entries: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) entries.push(e.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return actions;
    throw err;
  }
  entries = entries.filter((e) => /^\.(restore|snapshot|publish|backup)-|^\.unpack$/.test(e))
    .sort();
  for (const e of entries) {
    const tmp = join(dir, e);
    if (e.startsWith(".restore-") && !existsSync(rootfs)) {
      if (existsSync(join(tmp, "old")) && existsSync(join(tmp, "rootfs"))) {
        await Deno.rename(join(tmp, "rootfs"), rootfs);
        actions.push("finished a restore that was interrupted");
      } else if (existsSync(join(tmp, "old"))) {
        await Deno.rename(join(tmp, "old"), rootfs);
        actions.push("undid a restore that was interrupted");
      }
    }
    await removeTree(tmp);
    actions.push(`removed ${e}`);
  }
  return actions;
}
