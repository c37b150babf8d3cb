/**
 * User-namespace id maps for unprivileged containers: the host range comes from /etc/subuid and
 * /etc/subgid (a range for root is added if there is none), and the rootfs is shifted into it.
 */
import {
  chmodSync,
  lchownSync,
  lstatSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

export interface IdRange {
  hostBase: number;
  size: number;
}

export interface IdMap {
  uid: IdRange;
  gid: IdRange;
}

/** Every container gets 65536 ids, as Incus's default. */
export const MAP_SIZE = 65536;
/** Where a range for root is created when the host has none. */
const DEFAULT_BASE = 1_000_000;
const DEFAULT_SIZE = 1_000_000_000;

/** Root's first range of at least MAP_SIZE ids in a subuid/subgid text. */
export function findRange(text: string, user = "root"): IdRange | undefined {
  for (const line of text.split("\n")) {
    const [name, start, count] = line.trim().split(":");
    if (name !== user || start === undefined || count === undefined) continue;
    const hostBase = Number(start);
    const size = Number(count);
    if (Number.isInteger(hostBase) && Number.isInteger(size) && size >= MAP_SIZE) {
      return { hostBase, size: MAP_SIZE };
    }
  }
  return undefined;
}

/** A base past every existing entry, so the appended range overlaps none. */
export function freeBase(text: string): number {
  let end = DEFAULT_BASE;
  for (const line of text.split("\n")) {
    const [, start, count] = line.trim().split(":");
    const s = Number(start);
    const c = Number(count);
    if (Number.isInteger(s) && Number.isInteger(c) && s + c > end) end = s + c;
  }
  return end;
}

function ensureRange(file: string): IdRange {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch { /* missing file: create it */ }
  const found = findRange(text);
  if (found) return found;
  const base = freeBase(text);
  const prefix = text === "" || text.endsWith("\n") ? text : `${text}\n`;
  writeFileSync(file, `${prefix}root:${base}:${DEFAULT_SIZE}\n`);
  return { hostBase: base, size: MAP_SIZE };
}

/** The host id map for root's containers, creating /etc/subuid and /etc/subgid ranges if needed. */
export function hostIdMap(files = { uid: "/etc/subuid", gid: "/etc/subgid" }): IdMap {
  return { uid: ensureRange(files.uid), gid: ensureRange(files.gid) };
}

/** LXC config lines for the map. */
export function idmapLines(map: IdMap): string[] {
  return [
    `lxc.idmap = u 0 ${map.uid.hostBase} ${map.uid.size}`,
    `lxc.idmap = g 0 ${map.gid.hostBase} ${map.gid.size}`,
  ];
}

/** The map in the `volatile.idmap.*` JSON form Incus stores. */
export function idmapJson(map: IdMap): string {
  return JSON.stringify([
    { Isuid: true, Isgid: false, Hostid: map.uid.hostBase, Nsid: 0, Maprange: map.uid.size },
    { Isuid: false, Isgid: true, Hostid: map.gid.hostBase, Nsid: 0, Maprange: map.gid.size },
  ]);
}

/**
 * Shifts ownership of every file under `root` by `delta` (positive: into the map; negative: back
 * out). Ids outside the map are left alone. setuid/setgid bits, which chown clears, are restored.
 */
export function shiftTree(root: string, uidDelta: number, gidDelta: number): number {
  let count = 0;
  const visit = (path: string) => {
    const st = lstatSync(path);
    const uid = st.uid + uidDelta;
    const gid = st.gid + gidDelta;
    if (uid >= 0 && gid >= 0) {
      lchownSync(path, uid, gid);
      count++;
      if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) chmodSync(path, st.mode & 0o7777);
    }
    if (st.isDirectory()) {
      for (const entry of readdirSync(path)) visit(join(path, entry));
    }
  };
  visit(root);
  return count;
}
