/**
 * What a storage pool does to the host's filesystems: a `dir` pool is a directory; a `btrfs` pool
 * is a directory on btrfs, or a btrfs filesystem in a loop file the daemon makes and mounts. On
 * both, a volume is a directory (a subvolume on btrfs), and a clone of one is a btrfs snapshot or
 * a copy that shares blocks where the filesystem can (`cp -a --reflink=auto`).
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { InvalidState } from "../../contract/errors.ts";
import { readHostFile } from "../hostfs.ts";
import type { Runner } from "../runner.ts";
import { isMountPoint, mountOf } from "../statfs.ts";

export type PoolDriverName = "dir" | "btrfs";

/** Where a pool keeps its data. */
export interface PoolLayout {
  driver: PoolDriverName;
  /** The pool's directory (a btrfs pool's mount point when it has a loop file). */
  path: string;
  /** A btrfs pool's loop file, when the daemon made one. */
  loopFile?: string;
  /** Kinds of volume kept elsewhere than `path/KIND` (the default pool's historical layout). */
  dirs?: Partial<Record<PoolDir, string>>;
  /** The host gid of unprivileged containers' root: the group of the custom volumes' dir. */
  customGid?: number;
}

/** The sub-directories of a pool, one per kind of volume. */
export const POOL_DIRS = ["containers", "virtual-machines", "images", "custom"] as const;
export type PoolDir = typeof POOL_DIRS[number];

/**
 * Who may search a kind's directory: every uid for instances (an unprivileged container's root
 * must reach its rootfs); for custom volumes root and the group of containers' root (LXC mounts
 * them from inside the container's user namespace), no one else: a container may leave a setuid
 * file owned by host root on a shifted volume, and no host user may reach it; root only for image
 * copies.
 */
export function kindMode(kind: PoolDir): number {
  if (kind === "containers" || kind === "virtual-machines") return 0o711;
  return kind === "custom" ? 0o710 : 0o700;
}

/** The type of the filesystem holding `path` (from the mount table), or "" when unknown. */
export async function fsTypeOf(runner: Runner, path: string): Promise<string> {
  const mountinfo = await readHostFile(runner, "/proc/self/mountinfo") ?? "";
  return mountOf(mountinfo, path)?.fstype ?? "";
}

async function mounted(runner: Runner, path: string): Promise<boolean> {
  return isMountPoint(await readHostFile(runner, "/proc/self/mountinfo") ?? "", path);
}

/** Volume operations on one pool's filesystem. */
export class PoolStorage {
  constructor(readonly layout: PoolLayout, private runner: Runner) {}

  dir(kind: PoolDir): string {
    return this.layout.dirs?.[kind] ?? join(this.layout.path, kind);
  }

  /** Makes the pool's storage: its directory (or loop file, formatted and mounted), its dirs. */
  async create(sizeBytes: number): Promise<void> {
    const { path, loopFile } = this.layout;
    if (loopFile) {
      await Deno.mkdir(dirname(loopFile), { recursive: true, mode: 0o700 });
      const f = await Deno.open(loopFile, { write: true, createNew: true, mode: 0o600 });
      try {
        await f.truncate(sizeBytes);
      } finally {
        f.close();
      }
      await this.runner.run(["mkfs.btrfs", "-q", loopFile]);
    }
    await Deno.mkdir(path, { recursive: true, mode: 0o711 });
    await this.mount();
    for (const kind of POOL_DIRS) {
      await Deno.mkdir(this.dir(kind), { recursive: true, mode: kindMode(kind) });
      await this.guard(kind);
    }
  }

  /** Mounts a loop-file pool if it is not mounted (at daemon start); checks a btrfs pool is one. */
  async mount(): Promise<void> {
    const { path, loopFile, driver } = this.layout;
    if (loopFile && !(await mounted(this.runner, path))) {
      if (!existsSync(loopFile)) {
        throw new InvalidState(`The loop file of the pool at ${path} is missing: ${loopFile}`);
      }
      await Deno.mkdir(path, { recursive: true, mode: 0o711 });
      await this.runner.run(["mount", "-o", "loop", "--", loopFile, path]);
    }
    // Unprivileged containers must search every directory above their rootfs; no other uid may
    // reach image copies or custom volumes.
    await Deno.chmod(path, 0o711);
    for (const kind of POOL_DIRS) await this.guard(kind).catch(() => {});
    if (driver === "btrfs" && (await fsTypeOf(this.runner, path)) !== "btrfs") {
      throw new InvalidState(`The btrfs pool at ${path} is not on btrfs`);
    }
  }

  /** Gives a kind's directory its mode (and the custom volumes' dir its group). */
  async guard(kind: PoolDir): Promise<void> {
    await Deno.chmod(this.dir(kind), kindMode(kind));
    if (kind === "custom" && this.layout.customGid !== undefined) {
      await Deno.chown(this.dir(kind), 0, this.layout.customGid);
    }
  }

  /** Removes everything the pool made: its dirs, and its loop file (unmounted) if it has one. */
  async delete(removePath: boolean): Promise<void> {
    const { path, loopFile } = this.layout;
    if (loopFile) {
      await this.#unmount(path);
      await Deno.remove(loopFile).catch(ignoreMissing);
      await Deno.remove(path).catch(ignoreMissing);
      return;
    }
    for (const kind of POOL_DIRS) await this.removeVolume(this.dir(kind));
    if (removePath) await Deno.remove(path).catch(ignoreMissing);
  }

  /** Unmounts a loop file's filesystem, retrying for a few seconds while it is busy. */
  async #unmount(path: string): Promise<void> {
    for (let i = 0;; i++) {
      if (!(await mounted(this.runner, path))) return;
      const r = await this.runner.run(["umount", "--", path], { allowFailure: true });
      if (r.code === 0) return;
      if (i >= 20) {
        throw new InvalidState(`Cannot unmount the pool at ${path}: ${r.stderr.trim()}`);
      }
      await new Promise((res) => setTimeout(res, 250));
    }
  }

  /** An empty volume directory (a subvolume on btrfs). */
  async makeVolume(path: string): Promise<void> {
    if (this.layout.driver === "btrfs") {
      await this.runner.run(["btrfs", "-q", "subvolume", "create", path]);
      await Deno.chmod(path, 0o711);
    } else {
      await Deno.mkdir(path, { mode: 0o711 });
    }
  }

  /** `to` made a copy of the volume `from` (a snapshot on btrfs); `to` must not exist. */
  async clone(from: string, to: string): Promise<void> {
    if (this.layout.driver === "btrfs" && (await this.#isSubvolume(from))) {
      await this.runner.run(["btrfs", "-q", "subvolume", "snapshot", from, to]);
    } else {
      await this.runner.run(["cp", "-a", "--reflink=auto", "--", from, to]);
    }
  }

  /** Removes a volume (a subvolume, with any nested ones, on btrfs; a tree otherwise). */
  async removeVolume(path: string): Promise<void> {
    if (!existsSync(path)) return;
    // On btrfs a subvolume is removed by rmdir once empty (the kernel allows it to root).
    await Deno.remove(path, { recursive: true }).catch(ignoreMissing);
  }

  /** A sparse qcow2 disk of `bytes` (a block volume). */
  async makeDisk(file: string, bytes: number): Promise<void> {
    await this.runner.run(["qemu-img", "create", "-q", "-f", "qcow2", file, String(bytes)]);
  }

  /**
   * Makes the directory of instance `name` on the pool; when the driver keeps it elsewhere
   * (`link`, its own path for it), `link` becomes a symlink to it.
   */
  async makeInstanceDir(kind: PoolDir, name: string, link: string, mode: number): Promise<void> {
    const target = join(this.dir(kind), name);
    if (target === link) return await Deno.mkdir(link, { recursive: true, mode });
    if (existsSync(target)) {
      throw new InvalidState(`Storage for "${name}" already exists on the pool: ${target}`);
    }
    await Deno.mkdir(this.dir(kind), { recursive: true, mode: kindMode(kind) });
    await Deno.mkdir(target, { mode });
    try {
      await Deno.symlink(target, link);
    } catch (err) {
      await Deno.remove(target).catch(() => {});
      throw err;
    }
  }

  async #isSubvolume(path: string): Promise<boolean> {
    // A subvolume's root has inode 256 on btrfs.
    try {
      return (await Deno.stat(path)).ino === 256;
    } catch {
      return false;
    }
  }
}

/** Removes an instance's directory: the tree, or the tree a symlink to a pool points at, and it. */
export async function removeInstanceDir(link: string): Promise<void> {
  const st = await Deno.lstat(link).catch(() => undefined);
  if (!st) return;
  if (st.isSymlink) {
    await Deno.remove(await Deno.readLink(link), { recursive: true }).catch(ignoreMissing);
    await Deno.remove(link);
  } else {
    await Deno.remove(link, { recursive: true }).catch(ignoreMissing);
  }
}

/** Renames an instance's directory (on a pool: the target and the symlink to it). */
export async function renameInstanceDir(link: string, newLink: string): Promise<void> {
  const st = await Deno.lstat(link);
  if (!st.isSymlink) return await Deno.rename(link, newLink);
  const target = await Deno.readLink(link);
  const newTarget = join(dirname(target), basename(newLink));
  if (existsSync(newTarget)) throw new InvalidState(`Storage already exists: ${newTarget}`);
  await Deno.rename(target, newTarget);
  await Deno.symlink(newTarget, newLink);
  await Deno.remove(link);
}

function ignoreMissing(err: unknown): void {
  if (!(err instanceof Deno.errors.NotFound)) throw err;
}
