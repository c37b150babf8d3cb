/**
 * The bytes of SFTP version 3 (draft-ietf-secsh-filexfer-02): packet types, status codes, file
 * attributes, and a bounded reader and a writer for packet bodies. Pure code with no imports: the
 * confined helper loads it (sftp_server.ts) in a process that must start fast.
 */

/** Packet types (section 3 of the draft). */
export const FXP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

/** Status codes (section 7). */
export const FX = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;

/** Open flags (SSH_FXF_*). */
export const FXF = { READ: 1, WRITE: 2, APPEND: 4, CREAT: 8, TRUNC: 0x10, EXCL: 0x20 } as const;

/** Attribute flags (SSH_FILEXFER_ATTR_*). */
const ATTR = {
  SIZE: 1,
  UIDGID: 2,
  PERMISSIONS: 4,
  ACMODTIME: 8,
  EXTENDED: 0x80000000,
} as const;

/** The version this server speaks. */
export const SFTP_VERSION = 3;
/** The largest data a WRITE may carry and a READ answers with. */
export const MAX_DATA = 256 * 1024;
/** The largest packet accepted (a WRITE of MAX_DATA and its header fit); a larger one ends it. */
export const MAX_PACKET = MAX_DATA + 4096;
/** Strings (paths, handles, extension names) longer than this make the packet malformed. */
const MAX_STRING = 8192;
/** A packet claiming more extended attributes than this is malformed. */
const MAX_EXTENDED = 64;

/** File attributes; absent fields were not sent (or are not to be changed). */
export interface Attrs {
  size?: number;
  uid?: number;
  gid?: number;
  /** The full st_mode, type bits included. */
  permissions?: number;
  atime?: number;
  mtime?: number;
}

/** A packet that does not parse: the session ends. */
export class Malformed extends Error {}

const dec = new TextDecoder("utf-8", { fatal: false });
const enc = new TextEncoder();

/** Reads the fields of one packet body, never past its end. */
export class Reader {
  #view: DataView;
  #off = 0;

  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  #need(n: number): void {
    if (this.#off + n > this.bytes.length) throw new Malformed("Packet ends inside a field");
  }

  byte(): number {
    this.#need(1);
    return this.bytes[this.#off++];
  }

  u32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.#off);
    this.#off += 4;
    return v;
  }

  /** A uint64 as a number; one beyond 2^53 is malformed. */
  u64(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi >= 2 ** 21) throw new Malformed("Offset or size beyond 2^53");
    return hi * 2 ** 32 + lo;
  }

  /** A string's bytes (a view into the packet). */
  bytesField(max = MAX_STRING): Uint8Array {
    const n = this.u32();
    if (n > max) throw new Malformed("String too long");
    this.#need(n);
    const out = this.bytes.subarray(this.#off, this.#off + n);
    this.#off += n;
    return out;
  }

  string(): string {
    return dec.decode(this.bytesField());
  }

  attrs(): Attrs {
    const flags = this.u32();
    const a: Attrs = {};
    if (flags & ATTR.SIZE) a.size = this.u64();
    if (flags & ATTR.UIDGID) {
      a.uid = this.u32();
      a.gid = this.u32();
    }
    if (flags & ATTR.PERMISSIONS) a.permissions = this.u32();
    if (flags & ATTR.ACMODTIME) {
      a.atime = this.u32();
      a.mtime = this.u32();
    }
    if (flags & ATTR.EXTENDED) {
      const count = this.u32();
      if (count > MAX_EXTENDED) throw new Malformed("Too many extended attributes");
      for (let i = 0; i < count; i++) {
        this.bytesField();
        this.bytesField();
      }
    }
    return a;
  }
}

/** Builds one packet: the length prefix is filled in by `done()`. */
export class Writer {
  #buf: Uint8Array;
  #view: DataView;
  #off = 4;

  constructor(type: number, id?: number, size = 256) {
    this.#buf = new Uint8Array(size);
    this.#view = new DataView(this.#buf.buffer);
    this.byte(type);
    if (id !== undefined) this.u32(id);
  }

  #room(n: number): void {
    if (this.#off + n <= this.#buf.length) return;
    const bigger = new Uint8Array(Math.max(this.#buf.length * 2, this.#off + n));
    bigger.set(this.#buf.subarray(0, this.#off));
    this.#buf = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  byte(v: number): this {
    this.#room(1);
    this.#buf[this.#off++] = v;
    return this;
  }

  u32(v: number): this {
    this.#room(4);
    this.#view.setUint32(this.#off, v >>> 0);
    this.#off += 4;
    return this;
  }

  u64(v: number): this {
    return this.u32(Math.floor(v / 2 ** 32)).u32(v % 2 ** 32);
  }

  bytes(b: Uint8Array): this {
    this.u32(b.length);
    this.#room(b.length);
    this.#buf.set(b, this.#off);
    this.#off += b.length;
    return this;
  }

  string(s: string): this {
    return this.bytes(enc.encode(s));
  }

  attrs(a: Attrs): this {
    const flags = (a.size !== undefined ? ATTR.SIZE : 0) |
      (a.uid !== undefined && a.gid !== undefined ? ATTR.UIDGID : 0) |
      (a.permissions !== undefined ? ATTR.PERMISSIONS : 0) |
      (a.atime !== undefined && a.mtime !== undefined ? ATTR.ACMODTIME : 0);
    this.u32(flags);
    if (a.size !== undefined) this.u64(a.size);
    if (flags & ATTR.UIDGID) this.u32(a.uid!).u32(a.gid!);
    if (a.permissions !== undefined) this.u32(a.permissions);
    if (flags & ATTR.ACMODTIME) this.u32(a.atime!).u32(a.mtime!);
    return this;
  }

  /** The bytes encoded so far. */
  get length(): number {
    return this.#off;
  }

  /** The whole packet, length prefix included. */
  done(): Uint8Array {
    this.#view.setUint32(0, this.#off - 4);
    return this.#buf.subarray(0, this.#off);
  }
}

/** A STATUS answer. */
export function statusPacket(id: number, code: number, message: string): Uint8Array {
  return new Writer(FXP.STATUS, id).u32(code).string(message).string("en").done();
}

const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

function modeString(mode: number): string {
  const types: Record<number, string> = {
    0o040000: "d",
    0o120000: "l",
    0o020000: "c",
    0o060000: "b",
    0o010000: "p",
    0o140000: "s",
  };
  const type = types[mode & 0o170000] ?? "-";
  const rwx = (bits: number, special: boolean, on: string, off: string) =>
    `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${
      special ? (bits & 1 ? on : off) : (bits & 1 ? "x" : "-")
    }`;
  return type + rwx(mode >> 6, (mode & 0o4000) !== 0, "s", "S") +
    rwx(mode >> 3, (mode & 0o2000) !== 0, "s", "S") + rwx(mode, (mode & 0o1000) !== 0, "t", "T");
}

/**
 * The `longname` of a NAME entry, as `ls -l` prints it (numeric owner and group: the names are
 * the container's, not the host's). `now` is in seconds.
 */
export function longname(
  name: string,
  st: { mode: number; nlink: number; uid: number; gid: number; size: number; mtime: number },
  now: number,
): string {
  const d = new Date(st.mtime * 1000);
  const day = `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)}`;
  const recent = Math.abs(now - st.mtime) < 182 * 86400;
  const when = recent
    ? `${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`
    : ` ${d.getUTCFullYear()}`;
  return `${modeString(st.mode)} ${String(st.nlink).padStart(3)} ${String(st.uid).padEnd(8)} ${
    String(st.gid).padEnd(8)
  } ${String(st.size).padStart(8)} ${day} ${when} ${name}`;
}
