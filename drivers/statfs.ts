/**
 * The space of the filesystem holding a path (libc's `statvfs`, through FFI: Deno has no statfs),
 * and its type and source from the mount table. Feeds the `incus_filesystem_*` metrics.
 */

export interface FsUsage {
  /** Bytes in all. */
  size: number;
  /** Bytes free, root's reserve included. */
  free: number;
  /** Bytes an unprivileged writer may still use. */
  avail: number;
}

/** `struct statvfs` on 64-bit Linux: eleven 8-byte fields, then six ints. */
const STATVFS_SIZE = 112;

let statvfs: ((path: Uint8Array, buf: Uint8Array) => number) | null | undefined;

function libcStatvfs(): typeof statvfs {
  if (statvfs === undefined) {
    try {
      const lib = Deno.dlopen("libc.so.6", {
        statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
      });
      statvfs = (path, buf) => lib.symbols.statvfs(path, buf);
    } catch {
      statvfs = null;
    }
  }
  return statvfs;
}

/** The space of the filesystem holding `path`; undefined when it cannot be read. */
export function fsUsage(path: string): FsUsage | undefined {
  const call = libcStatvfs();
  if (!call || path.includes("\0")) return undefined;
  const buf = new Uint8Array(STATVFS_SIZE);
  if (call(new TextEncoder().encode(`${path}\0`), buf) !== 0) return undefined;
  const f = new BigUint64Array(buf.buffer);
  const frsize = f[1] || f[0];
  return {
    size: Number(f[2] * frsize),
    free: Number(f[3] * frsize),
    avail: Number(f[4] * frsize),
  };
}

/** Undoes mountinfo's octal escapes (`\040` for a space). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Whether a `/proc/self/mountinfo` text has a mount at exactly `path`. */
export function isMountPoint(mountinfo: string, path: string): boolean {
  return mountinfo.split("\n").some((line) => unescape(line.split(" ")[4] ?? "") === path);
}

/**
 * The mount holding `path` in a `/proc/self/mountinfo` text (the longest mount point that
 * contains it; the last mounted wins a tie): its filesystem type and source.
 */
export function mountOf(
  mountinfo: string,
  path: string,
): { fstype: string; source: string } | undefined {
  let best: { at: string; fstype: string; source: string } | undefined;
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const at = unescape(left.split(" ")[4] ?? "");
    const [fstype = "", source = ""] = right.split(" ");
    const inside = at === "/" || path === at || path.startsWith(`${at}/`);
    if (inside && (!best || at.length >= best.at.length)) best = { at, fstype, source };
  }
  return best && { fstype: best.fstype, source: unescape(best.source) };
}
