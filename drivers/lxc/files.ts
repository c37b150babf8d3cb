/**
 * File access in a container's rootfs from the host, running or stopped.
 *
 * Every path is resolved component by component under the rootfs (lstat each one, symlinks
 * expanded against the rootfs, `..` stopping at its root), so no path, however it is spelt and
 * whatever symlinks the container holds, reaches outside it. Opened files are checked against what
 * was resolved (same inode), and new files are created with O_EXCL, which never follows a symlink.
 * Ids are shifted through the container's id map: callers see and give ids as inside.
 */
import {
  constants,
  lchownSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  realpathSync,
  type Stats,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import { type FileHandle, open, readdir, readlink, rmdir, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BadRequest, Conflict, NotFound } from "../../agent/errors.ts";
import type { InstanceRecord } from "../../agent/store.ts";
import type { FileAccess, FileInfo, FileType, FileWrite } from "../files.ts";

/** As Linux's MAXSYMLINKS. */
const MAX_SYMLINK_HOPS = 40;
/** The id the kernel shows for host ids outside a user namespace's map. */
const OVERFLOW_ID = 65534;

// ---------------------------------------------------------------------------------------------
// Id maps

interface IdmapEntry {
  Isuid: boolean;
  Isgid: boolean;
  Hostid: number;
  Nsid: number;
  Maprange: number;
}

type IdKind = "uid" | "gid";

/** A container's id map (`volatile.*idmap*` JSON); empty for a privileged container. */
export class IdShift {
  constructor(private entries: IdmapEntry[]) {}

  /** The map the rootfs on disk is shifted to (`volatile.last_state.idmap`, else the current). */
  static of(inst: InstanceRecord): IdShift {
    const raw = inst.config["volatile.last_state.idmap"] ?? inst.config["volatile.idmap.current"] ??
      "[]";
    let entries: unknown;
    try {
      entries = JSON.parse(raw);
    } catch {
      throw new Error(`Instance "${inst.name}" has an invalid id map: ${raw}`);
    }
    if (!Array.isArray(entries)) throw new Error(`Instance "${inst.name}" has an invalid id map`);
    return new IdShift(entries as IdmapEntry[]);
  }

  #of(kind: IdKind): IdmapEntry[] {
    return this.entries.filter((e) => kind === "uid" ? e.Isuid : e.Isgid);
  }

  /** The id a host id shows as inside the container. */
  inside(hostId: number, kind: IdKind): number {
    const map = this.#of(kind);
    if (map.length === 0) return hostId;
    const e = map.find((e) => hostId >= e.Hostid && hostId < e.Hostid + e.Maprange);
    return e ? hostId - e.Hostid + e.Nsid : OVERFLOW_ID;
  }

  /** The host id for an id inside the container; BadRequest when the map does not cover it. */
  host(insideId: number, kind: IdKind): number {
    const map = this.#of(kind);
    if (map.length === 0) return insideId;
    const e = map.find((e) => insideId >= e.Nsid && insideId < e.Nsid + e.Maprange);
    if (!e) {
      const ranges = map.map((e) => `${e.Nsid}-${e.Nsid + e.Maprange - 1}`).join(", ");
      throw new BadRequest(
        `${kind.toUpperCase()} ${insideId} is outside the instance's id map (${ranges})`,
      );
    }
    return insideId - e.Nsid + e.Hostid;
  }
}

// ---------------------------------------------------------------------------------------------
// Path resolution

/** A path resolved under a rootfs. */
export type Resolution =
  | {
    ok: true;
    /** The host path of the final component; always under the root. */
    host: string;
    /** The same path as seen inside ("/" for the root). */
    inside: string;
    /** lstat of the final component; undefined when it does not exist yet. */
    stat?: Stats;
  }
  /** A directory on the way is missing (or is not a directory): `at` is its path inside. */
  | { ok: false; at: string; notDirectory: boolean };

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw err;
  }
}

const components = (path: string) => path.split("/").filter((c) => c !== "" && c !== ".");

/**
 * Resolves `path` (as seen inside) under `root` (a real host path without symlinks). Symlinks on
 * the way are expanded inside the root; the final one only when `followLast`.
 */
export function resolveInRoot(root: string, path: string, followLast: boolean): Resolution {
  if (path.includes("\0")) throw new BadRequest("Invalid path: it contains a NUL byte");
  const todo = components(path);
  const done: string[] = [];
  const inside = (names: string[]) => `/${names.join("/")}`;
  let stat: Stats | undefined;
  let hops = 0;
  while (todo.length > 0) {
    const name = todo.shift()!;
    stat = undefined;
    if (name === "..") {
      done.pop();
      continue;
    }
    const last = todo.length === 0;
    const host = join(root, ...done, name);
    const st = lstatOrUndefined(host);
    if (!st) {
      if (last) return { ok: true, host, inside: inside([...done, name]) };
      return { ok: false, at: inside([...done, name]), notDirectory: false };
    }
    if (st.isSymbolicLink() && (!last || followLast)) {
      if (++hops > MAX_SYMLINK_HOPS) throw new BadRequest("Too many levels of symbolic links");
      const target = readlinkSync(host);
      if (target.startsWith("/")) done.length = 0;
      todo.unshift(...components(target));
      continue;
    }
    if (!last && !st.isDirectory()) {
      return { ok: false, at: inside([...done, name]), notDirectory: true };
    }
    done.push(name);
    stat = st;
  }
  const host = join(root, ...done);
  return { ok: true, host, inside: inside(done), stat: stat ?? lstatSync(host) };
}

/** The final component of a path as given, to refuse `.` and `..` where a name is needed. */
function lastName(path: string): string {
  return path.split("/").filter((c) => c !== "").at(-1) ?? "";
}

function typeOf(st: Stats): FileType {
  if (st.isDirectory()) return "directory";
  if (st.isSymbolicLink()) return "symlink";
  return "file";
}

// ---------------------------------------------------------------------------------------------
// The driver's file access

export class LxcFiles implements FileAccess {
  constructor(private rootfs: (name: string) => string) {}

  #root(inst: InstanceRecord): string {
    try {
      return realpathSync(this.rootfs(inst.name));
    } catch {
      throw new NotFound(`The root file system of instance "${inst.name}" is missing`);
    }
  }

  /** Resolves an existing path; NotFound naming it otherwise. */
  #existing(inst: InstanceRecord, root: string, path: string, followLast: boolean) {
    const r = resolveInRoot(root, path, followLast);
    if (!r.ok || !r.stat) throw new NotFound(`File "${path}" not found in instance "${inst.name}"`);
    return { ...r, stat: r.stat };
  }

  /**
   * Guards against the container swapping a directory for a symlink after resolution: the
   * parent of `host` must still be a real directory under the root.
   */
  #checkParent(root: string, host: string): void {
    if (host === root) return;
    const parent = dirname(host);
    let real: string;
    try {
      real = realpathSync(parent);
    } catch {
      real = "";
    }
    if (real !== parent || !(parent === root || parent.startsWith(`${root}/`))) {
      throw new Conflict("The path changed while it was being resolved: try again");
    }
  }

  /** Opens `host` and checks it is still the file that was resolved. */
  async #openSame(host: string, flags: number, expect: Stats): Promise<FileHandle> {
    const fh = await open(host, flags);
    const st = await fh.stat();
    if (st.ino !== expect.ino || st.dev !== expect.dev) {
      await fh.close();
      throw new Conflict("The path changed while it was being accessed: try again");
    }
    return fh;
  }

  async stat(inst: InstanceRecord, path: string): Promise<FileInfo> {
    const ids = IdShift.of(inst);
    const r = this.#existing(inst, this.#root(inst), path, false);
    const st = r.stat;
    const info: FileInfo = {
      type: typeOf(st),
      uid: ids.inside(st.uid, "uid"),
      gid: ids.inside(st.gid, "gid"),
      mode: st.mode & 0o7777,
      size: st.size,
    };
    if (info.type === "symlink") info.target = await readlink(r.host);
    if (info.type === "directory") info.entries = (await readdir(r.host)).sort();
    return info;
  }

  async read(inst: InstanceRecord, path: string): Promise<Uint8Array> {
    const root = this.#root(inst);
    const r = this.#existing(inst, root, path, true);
    if (r.stat.isDirectory()) {
      throw new BadRequest(`"${path}" is a directory in instance "${inst.name}": list it instead`);
    }
    if (!r.stat.isFile()) {
      throw new BadRequest(`"${path}" in instance "${inst.name}" is not a regular file`);
    }
    this.#checkParent(root, r.host);
    const fh = await this.#openSame(r.host, constants.O_RDONLY, r.stat);
    try {
      return new Uint8Array(await fh.readFile());
    } finally {
      await fh.close();
    }
  }

  async write(inst: InstanceRecord, path: string, w: FileWrite): Promise<void> {
    const ids = IdShift.of(inst);
    const uid = w.uid === undefined ? undefined : ids.host(w.uid, "uid");
    const gid = w.gid === undefined ? undefined : ids.host(w.gid, "gid");
    const owner = { uid, gid, rootUid: ids.host(0, "uid"), rootGid: ids.host(0, "gid") };
    const root = this.#root(inst);
    const r = resolveInRoot(root, path, w.type !== "symlink");
    if (!r.ok) {
      if (r.notDirectory) {
        throw new BadRequest(`"${r.at}" is not a directory in instance "${inst.name}"`);
      }
      throw new NotFound(`Parent directory "${r.at}" not found in instance "${inst.name}"`);
    }
    if (w.type === "file") {
      await this.#writeFile(inst, root, path, r, w, owner);
    } else if (w.type === "directory") {
      await this.#writeDirectory(inst, root, path, r, w, owner);
    } else {
      this.#writeSymlink(inst, root, path, r, w, owner);
    }
  }

  async #writeFile(
    inst: InstanceRecord,
    root: string,
    path: string,
    r: { host: string; stat?: Stats },
    w: FileWrite,
    owner: Owner,
  ): Promise<void> {
    if (r.stat?.isDirectory()) {
      throw new Conflict(
        `"${path}" is a directory in instance "${inst.name}": cannot write a file over it`,
      );
    }
    if (r.stat && !r.stat.isFile()) {
      throw new BadRequest(`"${path}" in instance "${inst.name}" is not a regular file`);
    }
    this.#checkParent(root, r.host);
    const append = w.append ? constants.O_APPEND : 0;
    const fh = r.stat
      ? await this.#openSame(r.host, constants.O_WRONLY | append, r.stat)
      : await open(
        r.host,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | append,
        0o600,
      );
    try {
      if (r.stat && !w.append) await fh.truncate(0);
      const data = w.data ?? new Uint8Array();
      for (let off = 0; off < data.length;) {
        off += (await fh.write(data, off, data.length - off)).bytesWritten;
      }
      await applyOwnerMode(fh, r.stat, w.mode, owner, 0o644);
    } finally {
      await fh.close();
    }
  }

  async #writeDirectory(
    inst: InstanceRecord,
    root: string,
    path: string,
    r: { host: string; stat?: Stats },
    w: FileWrite,
    owner: Owner,
  ): Promise<void> {
    if (r.stat && !r.stat.isDirectory()) {
      throw new Conflict(
        `"${path}" already exists in instance "${inst.name}" as a ${
          typeOf(r.stat)
        }, not a directory`,
      );
    }
    this.#checkParent(root, r.host);
    if (!r.stat) mkdirSync(r.host, 0o700);
    const fh = await this.#openSame(r.host, constants.O_RDONLY, r.stat ?? lstatSync(r.host));
    try {
      await applyOwnerMode(fh, r.stat, w.mode, owner, 0o755);
    } finally {
      await fh.close();
    }
  }

  #writeSymlink(
    inst: InstanceRecord,
    root: string,
    path: string,
    r: { host: string; inside: string; stat?: Stats },
    w: FileWrite,
    owner: Owner,
  ): void {
    const target = new TextDecoder().decode(w.data ?? new Uint8Array());
    if (target === "" || target.includes("\0")) {
      throw new BadRequest("A symlink needs a target: send it as the request body");
    }
    if ([".", ".."].includes(lastName(path)) || r.inside === "/") {
      throw new BadRequest(`Cannot create a symlink at "${path}": name the link itself`);
    }
    this.#checkParent(root, r.host);
    if (r.stat) {
      if (!r.stat.isSymbolicLink()) {
        throw new Conflict(
          `"${path}" already exists in instance "${inst.name}" as a ${
            typeOf(r.stat)
          }, not a symlink`,
        );
      }
      if (readlinkSync(r.host) !== target) {
        unlinkSync(r.host);
        symlinkSync(target, r.host);
      }
    } else {
      symlinkSync(target, r.host);
    }
    const st = lstatSync(r.host);
    lchownSync(
      r.host,
      owner.uid ?? (r.stat ? st.uid : owner.rootUid),
      owner.gid ?? (r.stat ? st.gid : owner.rootGid),
    );
  }

  async remove(inst: InstanceRecord, path: string): Promise<void> {
    if ([".", ".."].includes(lastName(path))) {
      throw new BadRequest(`Cannot remove "${path}": name the file itself, not . or ..`);
    }
    const root = this.#root(inst);
    const r = this.#existing(inst, root, path, false);
    if (r.inside === "/") {
      throw new BadRequest(`Cannot remove the root directory of instance "${inst.name}"`);
    }
    this.#checkParent(root, r.host);
    if (r.stat.isDirectory()) {
      if ((await readdir(r.host)).length > 0) {
        throw new BadRequest(`Directory "${path}" is not empty in instance "${inst.name}"`);
      }
      await rmdir(r.host);
    } else {
      await unlink(r.host);
    }
  }
}

/** Host ids to set: the asked ones, else the existing ones, else the container's root. */
interface Owner {
  uid?: number;
  gid?: number;
  rootUid: number;
  rootGid: number;
}

/**
 * Sets owner and mode on an open file: asked values win; a new file gets root (inside) and
 * `defaultMode`; an existing one keeps what it has. chown clears setuid bits, so mode goes last.
 */
async function applyOwnerMode(
  fh: FileHandle,
  existing: Stats | undefined,
  mode: number | undefined,
  owner: Owner,
  defaultMode: number,
): Promise<void> {
  if (existing && mode === undefined && owner.uid === undefined && owner.gid === undefined) return;
  await fh.chown(
    owner.uid ?? existing?.uid ?? owner.rootUid,
    owner.gid ?? existing?.gid ?? owner.rootGid,
  );
  await fh.chmod(mode ?? (existing ? existing.mode & 0o7777 : defaultMode));
}
