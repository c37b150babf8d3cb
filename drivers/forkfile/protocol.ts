/**
 * What the daemon and the confined file helper (`helper.ts`) say to each other. The helper is
 * started with its root (a JSON argument) and answers one line when it is rooted. Then each
 * request is one JSON line on stdin and each answer one JSON line on stdout. Data travels in
 * frames (a 4-byte big-endian length, then the bytes; an empty frame ends it): a write's content
 * follows its request on stdin, always ended by an empty frame; a regular file's content follows
 * the `get` answer on stdout. This module imports nothing: the helper loads it in a process that
 * must start fast.
 */

/** The largest data frame either side sends. */
export const MAX_FRAME = 1 << 20;

/** Where the helper roots itself before touching anything. */
export type HelperRoot =
  /** A stopped container: its rootfs directory on the host. */
  | { kind: "dir"; path: string }
  /**
   * A running container: the root of its init process (`/proc/PID/root`), checked to still belong
   * to the container (its cgroup is `cgroup`, and, unprivileged, its user namespace is the one the
   * helper was started in) after the root is pinned, so a reused pid leads nowhere.
   */
  | { kind: "pid"; pid: number; cgroup: string; sameUserns: boolean };

export type HelperOp =
  | { op: "ping" }
  | { op: "stat"; path: string; maxEntries: number }
  /** A directory's listing or a symlink's target (as `stat`), or a regular file's bytes. */
  | { op: "get"; path: string; maxEntries: number }
  | {
    op: "write";
    path: string;
    type: "file" | "directory" | "symlink";
    uid?: number;
    gid?: number;
    mode?: number;
    append: boolean;
    /** Symlink target (file content comes on stdin). */
    target?: string;
    /** Refuse content beyond this many bytes. */
    maxBytes: number;
  }
  | { op: "remove"; path: string };

export interface HelperStat {
  type: "file" | "directory" | "symlink" | "other";
  uid: number;
  gid: number;
  mode: number;
  size: number;
  target?: string;
  entries?: string[];
}

/** Error kinds map to the daemon's typed errors (400, 404, 409, 413, 507). */
export type HelperErrorKind =
  | "BadRequest"
  | "NotFound"
  | "Conflict"
  | "TooLarge"
  | "NoSpace"
  | "Internal";

export type HelperAnswer =
  | {
    ok: true;
    stat?: HelperStat;
    written?: number;
    /** In the answer to being rooted: the device and inode of the new root. */
    root?: { dev: number; ino: number };
  }
  | { ok: false; kind: HelperErrorKind; message: string };

/** The hidden subcommand a compiled outpost binary runs the helper under. */
export const HELPER_SUBCOMMAND = "__forkfile";

/** The helper's first argument when it is to speak SFTP (sftp_server.ts) once rooted. */
export const SFTP_MODE = "--sftp";
