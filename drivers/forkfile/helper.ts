/**
 * The confined file helper: a process of outpost's own code that roots itself in one
 * container (chroot into its rootfs, or into its init's root while it runs) and, for an
 * unprivileged container, runs inside the container's user namespace as its root. Every path it
 * then opens is resolved by the kernel inside the container: a symlink swapped in at any moment
 * leads only to the container's own files, and host files owned by ids outside the container's
 * map are out of reach even through a mount. It never runs a binary of the container.
 *
 * Started by `client.ts` through `nsenter --user` (running container) or `unshare --user` (stopped
 * one), it then serves requests one at a time on stdin/stdout until stdin ends; see protocol.ts for
 * the exchange. Imports nothing of outpost's but the protocol types.
 */
import fs from "node:fs";
import {
  type HelperAnswer,
  type HelperErrorKind,
  type HelperOp,
  type HelperRoot,
  type HelperStat,
  MAX_FRAME,
  SFTP_MODE,
} from "./protocol.ts";
import { SftpSession } from "./sftp_server.ts";
import { type DirReader, loadDirReader } from "./dir_reader.ts";

class HelperError extends Error {
  constructor(readonly kind: HelperErrorKind, message: string) {
    super(message);
  }
}

const C = fs.constants;
/** Set once file bytes follow the answer line: a later error can only end the session. */
let streaming = false;
const CHUNK = 64 * 1024;
/** A request line longer than this ends the session (requests are small JSON objects). */
const MAX_REQUEST = 1 << 20;

/** Buffered, blocking reads of stdin: request lines and data frames. */
class Input {
  #buf = new Uint8Array(CHUNK * 2);
  #start = 0;
  #end = 0;

  #fill(): boolean {
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    const n = Deno.stdin.readSync(this.#buf.subarray(this.#end));
    if (n === null || n === 0) return false;
    this.#end += n;
    return true;
  }

  /** The next line, or null at the end of input. */
  line(): string | null {
    for (;;) {
      const nl = this.#buf.subarray(this.#start, this.#end).indexOf(10);
      if (nl >= 0) {
        const text = new TextDecoder().decode(this.#buf.subarray(this.#start, this.#start + nl));
        this.#start += nl + 1;
        return text;
      }
      if (this.#end - this.#start > MAX_REQUEST) throw new Error("Request line too long");
      if (!this.#fill()) return null;
    }
  }

  /** Exactly `n` bytes (a view valid until the next read). */
  exact(n: number): Uint8Array {
    while (this.#end - this.#start < n) {
      if (!this.#fill()) throw new Error("Input ended inside a frame");
    }
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** The next data frame; an empty one ends the data. */
  frame(): Uint8Array {
    const head = this.exact(4);
    const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0);
    if (len > MAX_FRAME) throw new Error("Data frame too large");
    return this.exact(len);
  }
}

const input = new Input();
/** Data frames of the current write not read yet (drained after an early error). */
let framesPending = false;

function drainFrames(): void {
  while (framesPending) {
    if (input.frame().length === 0) framesPending = false;
  }
}

/** One frame of data on stdout: a 4-byte big-endian length, then the bytes. */
function writeFrame(data: Uint8Array): void {
  const out = new Uint8Array(4 + data.length);
  new DataView(out.buffer).setUint32(0, data.length);
  out.set(data, 4);
  writeAll(1, out);
}
const enc = new TextEncoder();

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return enc.encode(`${s}\0`);
}

/**
 * chdir, chroot and the few /proc reads made before it, through libc: Deno has no API for the
 * first two, and refuses /proc to programs without --allow-all (as a release binary runs).
 */
function libc() {
  const lib = Deno.dlopen("libc.so.6", {
    chdir: { parameters: ["buffer"], result: "i32" },
    chroot: { parameters: ["buffer"], result: "i32" },
    open: { parameters: ["buffer", "i32"], result: "i32" },
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
    readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
    __errno_location: { parameters: [], result: "pointer" },
  });
  const errno = () => {
    const p = lib.symbols.__errno_location();
    return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
  };
  return {
    chdir(path: string) {
      if (lib.symbols.chdir(cstr(path)) !== 0) {
        throw new HelperError("NotFound", `Cannot enter ${path} (errno ${errno()})`);
      }
    },
    chroot(path: string) {
      if (lib.symbols.chroot(cstr(path)) !== 0) {
        throw new HelperError("Internal", `chroot failed (errno ${errno()})`);
      }
    },
    /** A small kernel file's text (at most 64 KiB). */
    readText(path: string): string {
      const fd = lib.symbols.open(cstr(path), C.O_RDONLY | 0o2000000 /* O_CLOEXEC */);
      if (fd < 0) throw new HelperError("Conflict", "The instance stopped: try again");
      const buf = new Uint8Array(65536);
      let n = 0;
      try {
        while (n < buf.length) {
          const got = Number(lib.symbols.read(fd, buf.subarray(n), BigInt(buf.length - n)));
          if (got <= 0) break;
          n += got;
        }
      } finally {
        lib.symbols.close(fd);
      }
      return new TextDecoder().decode(buf.subarray(0, n));
    },
    readlink(path: string): string {
      const buf = new Uint8Array(4096);
      const n = Number(lib.symbols.readlink(cstr(path), buf, BigInt(buf.length)));
      if (n < 0) throw new HelperError("Conflict", "The instance stopped: try again");
      return new TextDecoder().decode(buf.subarray(0, n));
    },
  };
}

/** The ids this process's user namespace maps (read before the chroot hides /proc). */
const mapped = { uid: [] as [number, number][], gid: [] as [number, number][] };

function parseMap(text: string): [number, number][] {
  return text.trim().split("\n").filter(Boolean).map((l) => {
    const [inside, , count] = l.trim().split(/\s+/).map(Number);
    return [inside, inside + count];
  });
}

/** Refuses ids the container's map does not cover before anything is written. */
function checkIds(uid: number | undefined, gid: number | undefined): void {
  const ok = (id: number | undefined, ranges: [number, number][]) =>
    id === undefined || ranges.some(([lo, hi]) => id >= lo && id < hi);
  if (!ok(uid, mapped.uid)) {
    throw new HelperError("BadRequest", `uid ${uid} is outside the instance's id map`);
  }
  if (!ok(gid, mapped.gid)) {
    throw new HelperError("BadRequest", `gid ${gid} is outside the instance's id map`);
  }
}

/** Roots the process in the container; nothing is touched before this returns. */
function enterRoot(root: HelperRoot): void {
  const c = libc();
  mapped.uid = parseMap(c.readText("/proc/self/uid_map"));
  mapped.gid = parseMap(c.readText("/proc/self/gid_map"));
  if (root.kind === "dir") {
    c.chdir(root.path);
  } else {
    // Pin the root first, then check the pid still is the container's init: if it was reused in
    // between, the check fails and nothing was touched. The cgroup counts at the top level only
    // (`/lxc.payload.NAME[/...]`): another container can name a cgroup of its own tree alike.
    try {
      c.chdir(`/proc/${root.pid}/root`);
    } catch {
      throw new HelperError("Conflict", "The instance stopped or restarted: try again");
    }
    const cgroups = c.readText(`/proc/${root.pid}/cgroup`).split("\n");
    const inCgroup = cgroups.some((l) =>
      l.split(":").slice(2).join(":").split("/")[1] === root.cgroup
    );
    const userns = c.readlink(`/proc/${root.pid}/ns/user`);
    if (!inCgroup || (root.sameUserns && userns !== c.readlink("/proc/self/ns/user"))) {
      throw new HelperError("Conflict", "The instance stopped or restarted: try again");
    }
  }
  c.chroot(".");
  c.chdir("/");
}

function checkPath(path: string): void {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new HelperError("BadRequest", "Paths must be absolute");
  }
  if (path.includes("\0")) throw new HelperError("BadRequest", "Paths cannot contain NUL bytes");
  if (enc.encode(path).length > 4095) throw new HelperError("BadRequest", "Path too long");
  if (path.split("/").some((c) => enc.encode(c).length > 255)) {
    throw new HelperError("BadRequest", "A path component is longer than 255 bytes");
  }
}

function lastName(path: string): string {
  return path.replace(/\/+$/, "").split("/").pop() ?? "";
}

function parentOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const at = trimmed.lastIndexOf("/");
  return at <= 0 ? "/" : trimmed.slice(0, at);
}

function typeOf(st: fs.Stats): HelperStat["type"] {
  if (st.isSymbolicLink()) return "symlink";
  if (st.isDirectory()) return "directory";
  if (st.isFile()) return "file";
  return "other";
}

function lstatOrUndefined(path: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw err;
  }
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off, data.length - off);
}

function answer(a: HelperAnswer): void {
  writeAll(1, enc.encode(`${JSON.stringify(a)}\n`));
}

function stat(path: string, maxEntries: number): HelperStat {
  const st = fs.lstatSync(path);
  const out: HelperStat = {
    type: typeOf(st),
    uid: st.uid,
    gid: st.gid,
    mode: st.mode & 0o7777,
    size: st.size,
  };
  if (out.type === "symlink") out.target = fs.readlinkSync(path);
  if (out.type === "directory") {
    const dir = fs.opendirSync(path);
    const entries: string[] = [];
    try {
      for (let e = dir.readSync(); e !== null; e = dir.readSync()) {
        if (entries.length >= maxEntries) {
          throw new HelperError(
            "TooLarge",
            `Directory "${path}" has more than ${maxEntries} entries`,
          );
        }
        entries.push(e.name);
      }
    } finally {
      dir.closeSync();
    }
    out.entries = entries.sort();
  }
  return out;
}

/**
 * Answers a directory or symlink as `stat` does; streams a regular file to stdout after its
 * answer line. Devices, FIFOs and sockets are refused, never opened for reading.
 */
function get(path: string, maxEntries: number): void {
  const lst = fs.lstatSync(path);
  if (lst.isDirectory() || lst.isSymbolicLink()) {
    answer({ ok: true, stat: stat(path, maxEntries) });
    return;
  }
  if (!lst.isFile()) throw new HelperError("BadRequest", `"${path}" is not a regular file`);
  let fd: number;
  try {
    fd = fs.openSync(path, C.O_RDONLY | C.O_NONBLOCK | C.O_NOFOLLOW | C.O_NOCTTY);
  } catch (err) {
    if ((err as { code?: string }).code === "ELOOP") {
      throw new HelperError("BadRequest", `"${path}" is a symlink`);
    }
    throw err;
  }
  const st = fs.fstatSync(fd);
  if (st.isDirectory()) throw new HelperError("BadRequest", `"${path}" is a directory`);
  if (!st.isFile()) throw new HelperError("BadRequest", `"${path}" is not a regular file`);
  answer({
    ok: true,
    stat: { type: "file", uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, size: st.size },
  });
  streaming = true;
  // At most the size it had when opened: a file the container keeps growing cannot keep the
  // download going forever.
  const buf = new Uint8Array(CHUNK);
  for (let left = st.size; left > 0;) {
    const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, left), null);
    if (n === 0) break;
    writeFrame(buf.subarray(0, n));
    left -= n;
  }
  fs.closeSync(fd);
  writeFrame(new Uint8Array());
  streaming = false;
}

/** Copies the request's data frames into `fd`, refusing more than `max` bytes. */
function copyFrames(fd: number, max: number): number {
  let total = 0;
  while (framesPending) {
    const data = input.frame();
    if (data.length === 0) {
      framesPending = false;
      break;
    }
    total += data.length;
    if (total > max) throw new HelperError("TooLarge", `File too large: the limit is ${max} bytes`);
    writeAll(fd, data);
  }
  return total;
}

/** Owner and mode as the files API sets them: asked values, else kept, else root and default. */
function ownAndMode(
  fd: number,
  existing: fs.Stats | undefined,
  w: { uid?: number; gid?: number; mode?: number },
  defaultMode: number,
): void {
  if (existing && w.mode === undefined && w.uid === undefined && w.gid === undefined) return;
  if (w.uid !== undefined || w.gid !== undefined) {
    try {
      fs.fchownSync(fd, w.uid ?? -1, w.gid ?? -1);
    } catch (err) {
      if ((err as { code?: string }).code === "EINVAL") {
        throw new HelperError(
          "BadRequest",
          `${
            [w.uid === undefined ? "" : `uid ${w.uid}`, w.gid === undefined ? "" : `gid ${w.gid}`]
              .filter(Boolean).join(" or ")
          } is outside the instance's id map`,
        );
      }
      throw err;
    }
  }
  // chown clears setuid bits: the mode goes last.
  fs.fchmodSync(fd, w.mode ?? (existing ? existing.mode & 0o7777 : defaultMode));
}

function write(op: Extract<HelperOp, { op: "write" }>): number {
  const path = op.path;
  checkIds(op.uid, op.gid);
  if (path.replace(/\/+$/, "") === "") throw new HelperError("BadRequest", "Cannot write to /");
  const parent = parentOf(path);
  let pst: fs.Stats;
  try {
    pst = fs.statSync(parent);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOENT") {
      throw new HelperError("NotFound", `Parent directory "${parent}" not found`);
    }
    if (code === "ENOTDIR") throw new HelperError("BadRequest", `"${parent}" is not a directory`);
    throw err;
  }
  if (!pst.isDirectory()) throw new HelperError("BadRequest", `"${parent}" is not a directory`);
  if (op.type === "symlink") return writeSymlink(op);
  if (op.type === "directory") return writeDirectory(op);
  const existing = (() => {
    try {
      return fs.statSync(path); // a symlink to a file is written through, inside the container
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return undefined;
      throw err;
    }
  })();
  if (existing?.isDirectory()) {
    throw new HelperError("Conflict", `"${path}" is a directory: cannot write a file over it`);
  }
  if (existing && !existing.isFile()) {
    throw new HelperError("BadRequest", `"${path}" is not a regular file`);
  }
  const flags = C.O_WRONLY | C.O_CREAT | C.O_NONBLOCK | C.O_NOCTTY |
    (op.append ? C.O_APPEND : 0);
  const fd = fs.openSync(path, flags, 0o600);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new HelperError("BadRequest", `"${path}" is not a regular file`);
    if (existing && (st.ino !== existing.ino || st.dev !== existing.dev)) {
      throw new HelperError("Conflict", `"${path}" changed while it was written: try again`);
    }
    if (!op.append) fs.ftruncateSync(fd, 0);
    let written: number;
    try {
      written = copyFrames(fd, op.maxBytes);
    } catch (err) {
      if (!existing) fs.unlinkSync(path);
      throw err;
    }
    ownAndMode(fd, existing, op, 0o644);
    return written;
  } finally {
    fs.closeSync(fd);
  }
}

function writeDirectory(op: Extract<HelperOp, { op: "write" }>): number {
  const existing = lstatOrUndefined(op.path);
  if (existing && !existing.isDirectory()) {
    throw new HelperError(
      "Conflict",
      `"${op.path}" already exists as a ${typeOf(existing)}, not a directory`,
    );
  }
  if (!existing) fs.mkdirSync(op.path, 0o700);
  const fd = fs.openSync(op.path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  try {
    ownAndMode(fd, existing, op, 0o755);
  } finally {
    fs.closeSync(fd);
  }
  return 0;
}

function writeSymlink(op: Extract<HelperOp, { op: "write" }>): number {
  const target = op.target ?? "";
  if (target === "" || target.includes("\0") || enc.encode(target).length > 4095) {
    throw new HelperError("BadRequest", "A symlink needs a target: send it as the request body");
  }
  if ([".", "..", ""].includes(lastName(op.path))) {
    throw new HelperError("BadRequest", `Cannot create a symlink at "${op.path}": name the link`);
  }
  const existing = lstatOrUndefined(op.path);
  if (existing && !existing.isSymbolicLink()) {
    throw new HelperError(
      "Conflict",
      `"${op.path}" already exists as a ${typeOf(existing)}, not a symlink`,
    );
  }
  if (!existing || fs.readlinkSync(op.path) !== target) {
    if (existing) fs.unlinkSync(op.path);
    fs.symlinkSync(target, op.path);
  }
  if (op.uid !== undefined || op.gid !== undefined) {
    try {
      fs.lchownSync(op.path, op.uid ?? -1, op.gid ?? -1);
    } catch (err) {
      if ((err as { code?: string }).code === "EINVAL") {
        throw new HelperError("BadRequest", "The uid or gid is outside the instance's id map");
      }
      throw err;
    }
  }
  return 0;
}

function remove(path: string): void {
  if ([".", ".."].includes(lastName(path))) {
    throw new HelperError("BadRequest", `Cannot remove "${path}": name the file itself`);
  }
  if (path.replace(/\/+$/, "") === "") {
    throw new HelperError("BadRequest", "Cannot remove the root directory");
  }
  const st = fs.lstatSync(path);
  if (st.isDirectory()) fs.rmdirSync(path);
  else fs.unlinkSync(path);
}

/** Maps errors from the kernel to what the API says. */
function toAnswer(err: unknown, path: string): HelperAnswer {
  if (err instanceof HelperError) return { ok: false, kind: err.kind, message: err.message };
  if (err instanceof Deno.errors.NotCapable) {
    return { ok: false, kind: "BadRequest", message: `"${path}" is a kernel file: not served` };
  }
  const code = (err as { code?: string }).code ?? "";
  const known: Record<string, [HelperErrorKind, string]> = {
    ENOENT: ["NotFound", `File "${path}" not found`],
    ENOTDIR: ["BadRequest", `A parent of "${path}" is not a directory`],
    EISDIR: ["Conflict", `"${path}" is a directory`],
    ELOOP: ["BadRequest", `Too many levels of symlinks at "${path}"`],
    ENAMETOOLONG: ["BadRequest", "File name too long"],
    ENOTEMPTY: ["BadRequest", `Directory "${path}" is not empty`],
    EEXIST: ["Conflict", `"${path}" already exists`],
    EACCES: ["BadRequest", `Permission denied at "${path}" in the instance`],
    EPERM: ["BadRequest", `Operation not permitted at "${path}" in the instance`],
    EROFS: ["BadRequest", `"${path}" is on a read-only file system in the instance`],
    ENXIO: ["BadRequest", `"${path}" is not a regular file`],
    ETXTBSY: ["Conflict", `"${path}" is busy`],
    EBUSY: ["Conflict", `"${path}" is busy`],
    ENOSPC: ["NoSpace", "No space left on the instance's disk"],
    EDQUOT: ["NoSpace", "Disk quota exceeded in the instance"],
  };
  const [kind, message] = known[code] ??
    ["Internal", err instanceof Error ? err.message : String(err)];
  return { ok: false, kind, message };
}

/** Serves one request; its answer (and data) are on stdout when it returns. */
function serve(req: HelperOp): void {
  switch (req.op) {
    case "ping":
      answer({ ok: true });
      return;
    case "stat":
      checkPath(req.path);
      answer({ ok: true, stat: stat(req.path, req.maxEntries) });
      return;
    case "get":
      checkPath(req.path);
      get(req.path, req.maxEntries);
      return;
    case "write": {
      framesPending = true;
      checkPath(req.path);
      const written = write(req);
      drainFrames();
      answer({ ok: true, written });
      return;
    }
    case "remove":
      checkPath(req.path);
      remove(req.path);
      answer({ ok: true });
      return;
    default:
      throw new HelperError("Internal", "Unknown helper request");
  }
}

/**
 * Roots the process as the last argument says, then serves requests until stdin ends: JSON lines,
 * or SFTP after its rooted answer when the first argument is SFTP_MODE. Returns the exit code: 0
 * at the end of input, 1 when it had to stop (a failure mid-stream, a broken exchange), 2 when it
 * could not root itself.
 */
export function helperMain(args: string[]): number {
  let openDir: DirReader | undefined;
  try {
    // libc is found on the host before the root changes, never inside the container.
    if (args[0] === SFTP_MODE) openDir = loadDirReader();
    enterRoot(JSON.parse(args[args.length - 1] ?? ""));
    const st = fs.statSync("/");
    answer({ ok: true, root: { dev: st.dev, ino: st.ino } });
  } catch (err) {
    try {
      answer(toAnswer(err, "/"));
    } catch { /* the daemon went away */ }
    return 2;
  }
  if (openDir) return serveSftp(openDir);
  for (;;) {
    let req: HelperOp;
    try {
      const line = input.line();
      if (line === null) return 0;
      req = JSON.parse(line);
    } catch {
      return 1;
    }
    try {
      serve(req);
    } catch (err) {
      if (streaming) return 1;
      try {
        // The error is said at once; data still on its way is read and dropped after it.
        answer(toAnswer(err, "path" in req ? req.path : "/"));
        drainFrames();
      } catch {
        return 1;
      }
    }
  }
}

/** Speaks SFTP on stdin/stdout until stdin ends (0) or the peer breaks the protocol (1). */
function serveSftp(openDir: DirReader): number {
  const session = new SftpSession({
    read: (buf) => Deno.stdin.readSync(buf),
    write: (data) => writeAll(1, data),
  }, openDir);
  try {
    return session.serve() === "closed" ? 0 : 1;
  } catch {
    return 1; // the daemon went away (a broken pipe)
  }
}

if (import.meta.main) Deno.exit(helperMain(Deno.args));
