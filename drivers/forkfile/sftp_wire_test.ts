import assert from "node:assert/strict";
import { FXP, longname, Malformed, Reader, statusPacket, Writer } from "./sftp_wire.ts";

/** The body of a packet the Writer made (its length prefix checked and stripped). */
function body(packet: Uint8Array): Reader {
  const len = new DataView(packet.buffer, packet.byteOffset).getUint32(0);
  assert.equal(len, packet.length - 4);
  return new Reader(packet.subarray(4));
}

Deno.test("Writer and Reader agree on every field, attributes included", () => {
  const attrs = {
    size: 2 ** 40 + 5,
    uid: 1000,
    gid: 100,
    permissions: 0o100644,
    atime: 1,
    mtime: 2,
  };
  const r = body(
    new Writer(FXP.ATTRS, 7, 4).string("é/x").u64(2 ** 53 - 1).attrs(attrs).attrs({}).done(),
  );
  assert.equal(r.byte(), FXP.ATTRS);
  assert.equal(r.u32(), 7);
  assert.equal(r.string(), "é/x");
  assert.equal(r.u64(), 2 ** 53 - 1);
  assert.deepEqual(r.attrs(), attrs);
  assert.deepEqual(r.attrs(), {});
  assert.throws(() => r.byte(), Malformed);
});

Deno.test("Reader refuses truncated fields, long strings, huge offsets and many extensions", () => {
  assert.throws(() => new Reader(new Uint8Array([0, 0, 0])).u32(), Malformed);
  const long = new Writer(0).bytes(new Uint8Array(9000)).done().subarray(5);
  assert.throws(() => new Reader(long).string(), Malformed);
  const claims = new Uint8Array([0, 0, 0, 10, 1, 2]); // a string of 10 bytes with 2 present
  assert.throws(() => new Reader(claims).bytesField(), Malformed);
  const huge = new Writer(0).u32(2 ** 21).u32(0).done().subarray(5);
  assert.throws(() => new Reader(huge).u64(), Malformed);
  const ext = new Writer(0).u32(0x80000000).u32(1_000_000).done().subarray(5);
  assert.throws(() => new Reader(ext).attrs(), Malformed);
});

Deno.test("a STATUS packet carries the code, the message and a language tag", () => {
  const r = body(statusPacket(9, 2, "No such file"));
  assert.deepEqual([r.byte(), r.u32(), r.u32(), r.string(), r.string()], [
    FXP.STATUS,
    9,
    2,
    "No such file",
    "en",
  ]);
});

Deno.test("longname reads like ls -l: type and mode bits, links, ids, size, date or year", () => {
  const now = Date.UTC(2026, 10, 26, 12) / 1000;
  const recent = Date.UTC(2026, 10, 2, 9, 5) / 1000;
  const old = Date.UTC(2020, 0, 15) / 1000;
  const st = { nlink: 1, uid: 0, gid: 0, size: 42, mtime: recent };
  assert.equal(
    longname("f", { ...st, mode: 0o100644 }, now),
    "-rw-r--r--   1 0        0              42 Nov  2 09:05 f",
  );
  assert.equal(
    longname("d", { ...st, mode: 0o041777, nlink: 3, mtime: old }, now),
    "drwxrwxrwt   3 0        0              42 Jan 15  2020 d",
  );
  assert.match(longname("l", { ...st, mode: 0o120777 }, now), /^lrwxrwxrwx /);
  assert.match(longname("s", { ...st, mode: 0o106644 }, now), /^-rwSr-Sr-- /);
  assert.match(longname("c", { ...st, mode: 0o020600 }, now), /^crw------- /);
});
