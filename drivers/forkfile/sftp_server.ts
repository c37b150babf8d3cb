/**
 * An SFTP version 3 server (draft-ietf-secsh-filexfer-02) for the confined helper: once the helper
 * has rooted itself in a container, it serves the `incus file push/pull/edit/mount` client
 * (github.com/pkg/sftp) with this on stdin/stdout. Every path goes to the kernel as given, so it
 * resolves inside the container's root; symlinks lead only to the container's own files.
 *
 * The peer may send any bytes: a packet longer than MAX_PACKET or one that does not parse ends
 * the session; open handles, read sizes and directory batches are bounded, so the memory held is
 * too. Requests are answered one at a time, in order. Imports nothing of outpost's but the wire.
 */
import fs from "node:fs";
import {
  type Attrs,
  FX,
  FXF,
  FXP,
  longname,
  Malformed,
  MAX_DATA,
  MAX_PACKET,
  Reader,
  SFTP_VERSION,
  statusPacket,
  Writer,
} from "./sftp_wire.ts";
import type { DirHandle, DirReader } from "./dir_reader.ts";

/** Where the server reads requests and writes answers (blocking). */
export interface SftpIo {
  /** Fills part of `buf`; 0 or null at the end of input. */
  read(buf: Uint8Array): number | null;
  /** Writes all of `data`. */
  write(data: Uint8Array): void;
}

/** Why a session ended: the peer closed its side, or sent something that is not SFTP. */
export type SftpEnd = "closed" | "malformed";

export interface SftpLimits {
  /** Open files and directories at once (more are refused with a FAILURE). */
  maxHandles: number;
  /** Names in one READDIR answer. */
  batch: number;
}

const DEFAULTS: SftpLimits = { maxHandles: 256, batch: 128 };
/** A READDIR answer stops growing past this many bytes (each name is at most a few KiB). */
const BATCH_BYTES = 64 * 1024;
const C = fs.constants;
/** The draft's bound on a handle string; a longer one makes the packet malformed. */
const MAX_HANDLE = 256;

/** A refusal of our own, answered with its status code. */
class Refused extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

type Handle =
  | { kind: "file"; fd: number }
  | { kind: "dir"; dir: DirHandle; path: string; done: boolean };

/** Reads whole packets into one buffer of bounded size. */
class Packets {
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  constructor(private io: SftpIo) {}

  /** Waits until `n` bytes are buffered; false at the end of input. */
  #want(n: number): boolean {
    while (this.#end - this.#start < n) {
      if (this.#start + n > this.#buf.length) {
        // Move what is buffered to the front, into a buffer big enough for the packet.
        const room = n > this.#buf.length ? new Uint8Array(n) : this.#buf;
        room.set(this.#buf.subarray(this.#start, this.#end));
        this.#end -= this.#start;
        this.#start = 0;
        this.#buf = room;
      }
      const got = this.io.read(this.#buf.subarray(this.#end));
      if (!got) return false;
      this.#end += got;
    }
    return true;
  }

  /** The next packet's body (type byte first; valid until the next call), or null at the end. */
  next(): Uint8Array | null {
    if (!this.#want(4)) {
      if (this.#end > this.#start) throw new Malformed("Input ended inside a packet");
      return null;
    }
    const len = new DataView(this.#buf.buffer, this.#start, 4).getUint32(0);
    if (len < 1 || len > MAX_PACKET) throw new Malformed(`Packet length ${len} out of bounds`);
    if (!this.#want(4 + len)) throw new Malformed("Input ended inside a packet");
    const body = this.#buf.subarray(this.#start + 4, this.#start + 4 + len);
    this.#start += 4 + len;
    return body;
  }
}

function attrsOf(st: fs.Stats): Attrs {
  return {
    size: st.size,
    uid: st.uid,
    gid: st.gid,
    permissions: st.mode,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
  };
}

/** A kernel error as a status: its code and a message naming the path. */
function statusOf(err: unknown, path: string): [number, string] {
  if (err instanceof Refused) return [err.code, err.message];
  if (err instanceof Deno.errors.NotCapable) {
    return [FX.PERMISSION_DENIED, `"${path}" is a kernel file: not served`];
  }
  const code = (err as { code?: string }).code ?? "";
  const known: Record<string, [number, string]> = {
    ENOENT: [FX.NO_SUCH_FILE, `No such file: "${path}"`],
    EACCES: [FX.PERMISSION_DENIED, `Permission denied: "${path}"`],
    EPERM: [FX.PERMISSION_DENIED, `Operation not permitted: "${path}"`],
    EEXIST: [FX.FAILURE, `"${path}" already exists`],
    ENOTEMPTY: [FX.FAILURE, `Directory "${path}" is not empty`],
    EISDIR: [FX.FAILURE, `"${path}" is a directory`],
    ENOTDIR: [FX.FAILURE, `A parent of "${path}" is not a directory`],
    ELOOP: [FX.FAILURE, `Too many levels of symlinks at "${path}"`],
    ENAMETOOLONG: [FX.FAILURE, "File name too long"],
    EINVAL: [FX.FAILURE, `Invalid argument at "${path}" (an id outside the instance's map?)`],
    EROFS: [FX.PERMISSION_DENIED, `"${path}" is on a read-only file system`],
    ENOSPC: [FX.FAILURE, "No space left on the instance's disk"],
    EDQUOT: [FX.FAILURE, "Disk quota exceeded in the instance"],
    EXDEV: [FX.FAILURE, "Cannot rename across file systems"],
  };
  return known[code] ?? [FX.FAILURE, err instanceof Error ? err.message : String(err)];
}

/** Paths go to the kernel as sent (relative ones from `/`); an empty one is the current dir. */
function pathOf(r: Reader): string {
  const p = r.string();
  if (p.includes("\0")) throw new Refused(FX.FAILURE, "Paths cannot contain NUL bytes");
  return p === "" ? "." : p;
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function openFlags(pflags: number): number {
  const rw = pflags & (FXF.READ | FXF.WRITE);
  let flags = rw === (FXF.READ | FXF.WRITE) ? C.O_RDWR : rw === FXF.WRITE ? C.O_WRONLY : C.O_RDONLY;
  if (pflags & FXF.APPEND) flags |= C.O_APPEND;
  if (pflags & FXF.CREAT) flags |= C.O_CREAT;
  if (pflags & FXF.TRUNC) flags |= C.O_TRUNC;
  if (pflags & FXF.EXCL) flags |= C.O_EXCL;
  // A FIFO never blocks the session, a terminal never becomes the helper's.
  return flags | C.O_NONBLOCK | C.O_NOCTTY;
}

/** One session: the handles it opened and the requests it answers. */
export class SftpSession {
  #handles = new Map<string, Handle>();
  #nextHandle = 1;
  #limits: SftpLimits;
  #readBuf = new Uint8Array(MAX_DATA);

  /** `openDir` reads directories a batch at a time (dir_reader.ts, loaded before rooting). */
  constructor(
    private io: SftpIo,
    private openDir: DirReader,
    limits: Partial<SftpLimits> = {},
  ) {
    this.#limits = { ...DEFAULTS, ...limits };
  }

  /** Serves until the input ends or breaks the protocol; every handle is closed after. */
  serve(): SftpEnd {
    const packets = new Packets(this.io);
    try {
      const init = packets.next();
      if (init === null) return "closed";
      const r = new Reader(init);
      if (r.byte() !== FXP.INIT) return "malformed";
      r.u32(); // the client's version: we answer with ours, 3, which pkg/sftp and OpenSSH speak
      this.io.write(
        new Writer(FXP.VERSION).u32(SFTP_VERSION).string("posix-rename@openssh.com").string("1")
          .done(),
      );
      for (let body = packets.next(); body !== null; body = packets.next()) {
        this.io.write(this.answer(new Reader(body)));
      }
      return "closed";
    } catch (err) {
      if (err instanceof Malformed) return "malformed";
      throw err;
    } finally {
      this.closeAll();
    }
  }

  closeAll(): void {
    for (const h of this.#handles.values()) this.#close(h);
    this.#handles.clear();
  }

  /** The answer to one request (a Malformed error for one that does not parse). */
  answer(r: Reader): Uint8Array {
    const type = r.byte();
    const id = r.u32();
    let path = "";
    try {
      switch (type) {
        case FXP.OPEN: {
          path = pathOf(r);
          return this.#open(id, path, r.u32(), r.attrs());
        }
        case FXP.CLOSE: {
          const key = dec(r.bytesField(MAX_HANDLE));
          const h = this.#handle(key);
          this.#handles.delete(key);
          this.#close(h);
          return ok(id);
        }
        case FXP.READ:
          return this.#read(id, this.#file(r), r.u64(), r.u32());
        case FXP.WRITE: {
          const fd = this.#file(r);
          const offset = r.u64();
          const data = r.bytesField(MAX_DATA);
          for (let off = 0; off < data.length;) {
            off += fs.writeSync(fd, data, off, data.length - off, offset + off);
          }
          return ok(id);
        }
        case FXP.LSTAT:
          path = pathOf(r);
          return attrsAnswer(id, fs.lstatSync(path));
        case FXP.STAT:
          path = pathOf(r);
          return attrsAnswer(id, fs.statSync(path));
        case FXP.FSTAT: {
          const h = this.#handle(dec(r.bytesField(MAX_HANDLE)));
          return attrsAnswer(id, h.kind === "file" ? fs.fstatSync(h.fd) : fs.statSync(h.path));
        }
        case FXP.SETSTAT:
          path = pathOf(r);
          setPathAttrs(path, r.attrs());
          return ok(id);
        case FXP.FSETSTAT:
          setFdAttrs(this.#file(r), r.attrs());
          return ok(id);
        case FXP.OPENDIR:
          path = pathOf(r);
          this.#room();
          return this.#add(id, { kind: "dir", dir: this.openDir(path), path, done: false });
        case FXP.READDIR:
          return this.#readdir(id, dec(r.bytesField(MAX_HANDLE)));
        case FXP.REMOVE:
          path = pathOf(r);
          fs.unlinkSync(path);
          return ok(id);
        case FXP.MKDIR: {
          path = pathOf(r);
          const a = r.attrs();
          fs.mkdirSync(path, (a.permissions ?? 0o755) & 0o7777);
          return ok(id);
        }
        case FXP.RMDIR:
          path = pathOf(r);
          fs.rmdirSync(path);
          return ok(id);
        case FXP.REALPATH:
          path = pathOf(r);
          return nameAnswer(id, [{ name: realpath(path) }]);
        case FXP.RENAME: {
          path = pathOf(r);
          const to = pathOf(r);
          // Version 3 renames never replace (posix-rename does): a race can only lose a file of
          // the container's own.
          if (exists(to)) throw new Refused(FX.FAILURE, `"${to}" already exists`);
          fs.renameSync(path, to);
          return ok(id);
        }
        case FXP.READLINK:
          path = pathOf(r);
          return nameAnswer(id, [{ name: fs.readlinkSync(path) }]);
        case FXP.SYMLINK: {
          // OpenSSH's order, which pkg/sftp follows: the target first, then the link's path.
          const target = pathOf(r);
          path = pathOf(r);
          fs.symlinkSync(target, path);
          return ok(id);
        }
        case FXP.EXTENDED:
          return this.#extended(id, r);
        default:
          return statusPacket(id, FX.OP_UNSUPPORTED, `Unsupported request type ${type}`);
      }
    } catch (err) {
      if (err instanceof Malformed) throw err;
      const [code, message] = statusOf(err, path);
      return statusPacket(id, code, message);
    }
  }

  #open(id: number, path: string, pflags: number, attrs: Attrs): Uint8Array {
    this.#room();
    // Only regular files: a device is never opened, a directory is OPENDIR's.
    const before = statOrUndefined(path);
    if (before?.isDirectory()) throw new Refused(FX.FAILURE, `"${path}" is a directory`);
    if (before && !before.isFile()) {
      throw new Refused(FX.PERMISSION_DENIED, `"${path}" is not a regular file`);
    }
    const fd = fs.openSync(path, openFlags(pflags), (attrs.permissions ?? 0o644) & 0o7777);
    if (!fs.fstatSync(fd).isFile()) {
      fs.closeSync(fd);
      throw new Refused(FX.PERMISSION_DENIED, `"${path}" is not a regular file`);
    }
    return this.#add(id, { kind: "file", fd });
  }

  #read(id: number, fd: number, offset: number, len: number): Uint8Array {
    const n = fs.readSync(fd, this.#readBuf, 0, Math.min(len, MAX_DATA), offset);
    if (n === 0 && len > 0) return statusPacket(id, FX.EOF, "End of file");
    return new Writer(FXP.DATA, id, n + 16).bytes(this.#readBuf.subarray(0, n)).done();
  }

  #readdir(id: number, key: string): Uint8Array {
    const h = this.#handle(key);
    if (h.kind !== "dir") throw new Refused(FX.FAILURE, "Not a directory handle");
    const names: Name[] = [];
    let size = 0;
    while (!h.done && names.length < this.#limits.batch && size < BATCH_BYTES) {
      const name = h.dir.next();
      if (name === null) {
        h.done = true;
        break;
      }
      names.push({ name, st: lstatOrUndefined(join(h.path, name)) });
      size += name.length * 2 + 128;
    }
    if (names.length === 0) return statusPacket(id, FX.EOF, "End of directory");
    return nameAnswer(id, names);
  }

  #extended(id: number, r: Reader): Uint8Array {
    const name = r.string();
    if (name !== "posix-rename@openssh.com") {
      return statusPacket(id, FX.OP_UNSUPPORTED, `Unsupported extension "${name}"`);
    }
    const from = pathOf(r);
    const to = pathOf(r);
    try {
      fs.renameSync(from, to);
      return ok(id);
    } catch (err) {
      const [code, message] = statusOf(err, from);
      return statusPacket(id, code, message);
    }
  }

  #room(): void {
    if (this.#handles.size >= this.#limits.maxHandles) {
      throw new Refused(
        FX.FAILURE,
        `Too many open handles (${this.#limits.maxHandles}): close some first`,
      );
    }
  }

  #add(id: number, h: Handle): Uint8Array {
    const key = String(this.#nextHandle++);
    this.#handles.set(key, h);
    return new Writer(FXP.HANDLE, id).string(key).done();
  }

  #handle(key: string): Handle {
    const h = this.#handles.get(key);
    if (!h) throw new Refused(FX.FAILURE, "Invalid handle");
    return h;
  }

  /** The fd of a file handle read from the request. */
  #file(r: Reader): number {
    const h = this.#handle(dec(r.bytesField(MAX_HANDLE)));
    if (h.kind !== "file") throw new Refused(FX.FAILURE, "Not a file handle");
    return h.fd;
  }

  #close(h: Handle): void {
    try {
      if (h.kind === "file") fs.closeSync(h.fd);
      else h.dir.close();
    } catch { /* already closed */ }
  }
}

interface Name {
  name: string;
  /** Absent: the entry went away or is not to be described (REALPATH, READLINK). */
  st?: fs.Stats;
}

const text = new TextDecoder();
function dec(b: Uint8Array): string {
  return text.decode(b);
}

function ok(id: number): Uint8Array {
  return statusPacket(id, FX.OK, "Success");
}

function attrsAnswer(id: number, st: fs.Stats): Uint8Array {
  return new Writer(FXP.ATTRS, id).attrs(attrsOf(st)).done();
}

function nameAnswer(id: number, names: Name[]): Uint8Array {
  const w = new Writer(FXP.NAME, id, 1024).u32(names.length);
  const now = Date.now() / 1000;
  for (const { name, st } of names) {
    w.string(name);
    if (!st) {
      w.string(name).attrs({});
      continue;
    }
    const a = attrsOf(st);
    const { mode, nlink, uid, gid, size } = st;
    w.string(longname(name, { mode, nlink, uid, gid, size, mtime: a.mtime! }, now)).attrs(a);
  }
  return w.done();
}

function statOrUndefined(path: string): fs.Stats | undefined {
  try {
    return fs.statSync(path);
  } catch {
    return undefined;
  }
}

function lstatOrUndefined(path: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path);
  } catch {
    return undefined;
  }
}

function exists(path: string): boolean {
  return lstatOrUndefined(path) !== undefined;
}

/** The canonical form of a path: the kernel's when it exists, else the lexical one. */
function realpath(path: string): string {
  try {
    return fs.realpathSync(path);
  } catch {
    const parts: string[] = [];
    for (const c of path.split("/")) {
      if (c === "..") parts.pop();
      else if (c !== "" && c !== ".") parts.push(c);
    }
    return `/${parts.join("/")}`;
  }
}

/** Size, then owner, then mode (a chown clears set-id bits), then times. */
function setPathAttrs(path: string, a: Attrs): void {
  if (a.size !== undefined) fs.truncateSync(path, a.size);
  if (a.uid !== undefined && a.gid !== undefined) fs.chownSync(path, a.uid, a.gid);
  if (a.permissions !== undefined) fs.chmodSync(path, a.permissions & 0o7777);
  if (a.atime !== undefined && a.mtime !== undefined) fs.utimesSync(path, a.atime, a.mtime);
}

function setFdAttrs(fd: number, a: Attrs): void {
  if (a.size !== undefined) fs.ftruncateSync(fd, a.size);
  if (a.uid !== undefined && a.gid !== undefined) fs.fchownSync(fd, a.uid, a.gid);
  if (a.permissions !== undefined) fs.fchmodSync(fd, a.permissions & 0o7777);
  if (a.atime !== undefined && a.mtime !== undefined) fs.futimesSync(fd, a.atime, a.mtime);
}
