/**
 * The SFTP server in this process, on a temp dir (the helper's chroot is tested in sftp_test.ts):
 * requests built with the wire's Writer, answers read with its Reader.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { concatBytes } from "../../contract/bytes.ts";
import { loadDirReader } from "./dir_reader.ts";
import { type SftpLimits, SftpSession } from "./sftp_server.ts";
import { FX, FXF, FXP, MAX_DATA, Reader, Writer } from "./sftp_wire.ts";

const INIT = new Writer(FXP.INIT).u32(3).done();
const openDir = loadDirReader();

/** Serves `input` (then, if `endless`, zeros forever); the answers and how much was read. */
function serve(input: Uint8Array, endless = false) {
  let at = 0;
  const out: Uint8Array[] = [];
  const end = new SftpSession({
    read: (buf) => {
      const n = Math.min(buf.length, input.length - at);
      if (n > 0) buf.set(input.subarray(at, at + n));
      at += n;
      if (n > 0 || !endless) return n;
      buf.fill(0);
      at += buf.length;
      return buf.length;
    },
    write: (data) => out.push(data.slice()),
  }, openDir).serve();
  return { end, read: at, answers: out.map((p) => new Reader(p.subarray(4))) };
}

/** A session answering one request at a time, on a temp dir removed afterwards. */
async function withSession(
  fn: (ask: (w: Writer) => Reader, dir: string) => void,
  limits: Partial<SftpLimits> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-sftp-" });
  const session = new SftpSession({ read: () => 0, write: () => {} }, openDir, limits);
  try {
    fn((w) => {
      const answer = session.answer(new Reader(w.done().subarray(4)));
      return new Reader(answer.subarray(4));
    }, dir);
  } finally {
    session.closeAll();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The code of a STATUS answer (asserting it is one, for request 1). */
function status(r: Reader): number {
  assert.equal(r.byte(), FXP.STATUS);
  assert.equal(r.u32(), 1);
  return r.u32();
}

function handle(r: Reader): string {
  assert.equal(r.byte(), FXP.HANDLE);
  r.u32();
  return r.string();
}

const open = (path: string, flags: number) =>
  new Writer(FXP.OPEN, 1).string(path).u32(flags).attrs({});
const req = (type: number) => new Writer(type, 1);

Deno.test("serve() answers INIT with version 3 and posix-rename, and ends at the end of input", () => {
  const { end, answers } = serve(INIT);
  assert.equal(end, "closed");
  const v = answers[0];
  assert.deepEqual([v.byte(), v.u32(), v.string(), v.string()], [
    FXP.VERSION,
    3,
    "posix-rename@openssh.com",
    "1",
  ]);
});

Deno.test("an oversized packet ends the session at its header, its body never read", () => {
  const huge = new Uint8Array([0x7f, 0xff, 0xff, 0xff, FXP.WRITE]);
  const { end, read } = serve(concatBytes([INIT, huge]), true);
  assert.equal(end, "malformed");
  assert.ok(read < 1 << 20, `read ${read} bytes`);
  // A zero-length packet, a packet cut short, and anything but INIT first end it too.
  assert.equal(serve(concatBytes([INIT, new Uint8Array(4)])).end, "malformed");
  assert.equal(serve(concatBytes([INIT, req(FXP.STAT).done().subarray(0, 7)])).end, "malformed");
  assert.equal(serve(req(FXP.STAT).string("/").done()).end, "malformed");
  // A request whose fields run past its end.
  assert.equal(serve(concatBytes([INIT, new Writer(FXP.OPEN, 1).u32(99).done()])).end, "malformed");
});

Deno.test("open handles are bounded per session, and closing one frees its place", async () => {
  await withSession((ask, dir) => {
    writeFileSync(join(dir, "f"), "x");
    const first = handle(ask(open(join(dir, "f"), FXF.READ)));
    handle(ask(req(FXP.OPENDIR).string(dir)));
    const refused = ask(open(join(dir, "f"), FXF.READ));
    assert.equal(status(refused), FX.FAILURE);
    assert.match(refused.string(), /Too many open handles \(2\)/);
    assert.equal(status(ask(req(FXP.OPENDIR).string(dir))), FX.FAILURE);
    assert.equal(status(ask(req(FXP.CLOSE).string(first))), FX.OK);
    handle(ask(open(join(dir, "f"), FXF.READ)));
    assert.equal(status(ask(req(FXP.CLOSE).string(first))), FX.FAILURE); // closed already
  }, { maxHandles: 2 });
});

Deno.test("READ answers at most 256 KiB, short at the end, then EOF", async () => {
  await withSession((ask, dir) => {
    const data = crypto.getRandomValues(new Uint8Array(65536));
    writeFileSync(join(dir, "f"), concatBytes(Array(10).fill(data))); // 640 KiB
    const h = handle(ask(open(join(dir, "f"), FXF.READ)));
    const read = (offset: number) => ask(req(FXP.READ).string(h).u64(offset).u32(1 << 20));
    const first = read(0);
    assert.equal(first.byte(), FXP.DATA);
    first.u32();
    assert.equal(first.bytesField(1 << 20).length, MAX_DATA);
    const last = read(600 * 1024);
    last.byte(), last.u32();
    assert.deepEqual(last.bytesField(1 << 20), data.subarray(600 * 1024 - 9 * 65536));
    assert.equal(status(read(640 * 1024)), FX.EOF);
  });
});

Deno.test("READDIR answers bounded batches with ls -l longnames, then EOF", async () => {
  await withSession((ask, dir) => {
    for (let i = 0; i < 10; i++) writeFileSync(join(dir, `f${i}`), "abc");
    const h = handle(ask(req(FXP.OPENDIR).string(dir)));
    const names: string[] = [];
    for (;;) {
      const r = ask(req(FXP.READDIR).string(h));
      if (r.byte() === FXP.STATUS) {
        r.u32();
        assert.equal(r.u32(), FX.EOF);
        break;
      }
      r.u32();
      const count = r.u32();
      assert.ok(count <= 4, `a batch of ${count}`);
      for (let i = 0; i < count; i++) {
        const name = r.string();
        assert.match(r.string(), new RegExp(`^-rw-r--r-- +1 0 +0 +3 .* ${name}$`));
        assert.equal(r.attrs().size, 3);
        names.push(name);
      }
    }
    assert.deepEqual(names.sort(), Array.from({ length: 10 }, (_, i) => `f${i}`));
  }, { batch: 4 });
});

Deno.test("errors map to status codes; renames never replace, posix-rename does", async () => {
  await withSession((ask, dir) => {
    const [a, b, d] = ["a", "b", "d"].map((n) => join(dir, n));
    writeFileSync(a, "A");
    writeFileSync(b, "B");
    mkdirSync(join(d, "sub"), { recursive: true });
    const stat = ask(req(FXP.STAT).string(join(dir, "missing")));
    assert.equal(status(stat), FX.NO_SUCH_FILE);
    assert.match(stat.string(), /missing/);
    assert.equal(status(ask(req(FXP.RMDIR).string(d))), FX.FAILURE);
    assert.equal(status(ask(req(FXP.REMOVE).string(d))), FX.FAILURE);
    assert.equal(status(ask(open(d, FXF.READ))), FX.FAILURE);
    assert.equal(status(ask(req(FXP.RENAME).string(a).string(b))), FX.FAILURE);
    assert.equal(readFileSync(b, "utf8"), "B");
    const posix = req(FXP.EXTENDED).string("posix-rename@openssh.com").string(a).string(b);
    assert.equal(status(ask(posix)), FX.OK);
    assert.equal(readFileSync(b, "utf8"), "A");
    assert.equal(status(ask(req(FXP.EXTENDED).string("statvfs@openssh.com"))), FX.OP_UNSUPPORTED);
    assert.equal(status(ask(req(99))), FX.OP_UNSUPPORTED);
    assert.equal(status(ask(req(FXP.READ).string("nope").u64(0).u32(1))), FX.FAILURE);
    assert.equal(status(ask(req(FXP.STAT).string("a\0b"))), FX.FAILURE);
  });
});

Deno.test("a FIFO or a device is refused at OPEN, never opened for reading", async () => {
  await withSession((ask, dir) => {
    const fifo = join(dir, "fifo");
    new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
    const r = ask(open(fifo, FXF.READ));
    assert.equal(status(r), FX.PERMISSION_DENIED);
    assert.match(r.string(), /not a regular file/);
    assert.equal(status(ask(open("/dev/null", FXF.WRITE))), FX.PERMISSION_DENIED);
  });
});

Deno.test("OPEN honours CREAT, EXCL, TRUNC and APPEND; SETSTAT and FSETSTAT change files", async () => {
  await withSession((ask, dir) => {
    const f = join(dir, "f");
    const write = (h: string, offset: number, text: string) =>
      status(ask(req(FXP.WRITE).string(h).u64(offset).bytes(new TextEncoder().encode(text))));
    const h = handle(ask(
      new Writer(FXP.OPEN, 1).string(f).u32(FXF.WRITE | FXF.CREAT | FXF.EXCL)
        .attrs({ permissions: 0o600 }),
    ));
    assert.equal(write(h, 0, "hello"), FX.OK);
    assert.equal(write(h, 10, "!"), FX.OK);
    assert.equal(statSync(f).size, 11);
    assert.equal(statSync(f).mode & 0o777, 0o600);
    assert.equal(status(ask(open(f, FXF.WRITE | FXF.CREAT | FXF.EXCL))), FX.FAILURE);
    const app = handle(ask(open(f, FXF.WRITE | FXF.APPEND)));
    assert.equal(write(app, 0, "+"), FX.OK);
    assert.equal(readFileSync(f, "utf8"), "hello\0\0\0\0\0!+");
    handle(ask(open(f, FXF.WRITE | FXF.TRUNC)));
    assert.equal(statSync(f).size, 0);
    const set = { size: 3, permissions: 0o640, uid: 0, gid: 0, atime: 1000, mtime: 2000 };
    assert.equal(status(ask(req(FXP.SETSTAT).string(f).attrs(set))), FX.OK);
    const st = statSync(f);
    assert.deepEqual([st.size, st.mode & 0o777, st.mtimeMs], [3, 0o640, 2_000_000]);
    assert.equal(
      status(ask(req(FXP.FSETSTAT).string(h).attrs({ size: 1, permissions: 0o604 }))),
      FX.OK,
    );
    assert.deepEqual([statSync(f).size, statSync(f).mode & 0o777], [1, 0o604]);
    const fst = ask(req(FXP.FSTAT).string(h));
    fst.byte(), fst.u32();
    assert.equal(fst.attrs().permissions, 0o100604);
  });
});

Deno.test("REALPATH canonicalizes paths that exist and, lexically, paths that do not", async () => {
  await withSession((ask, dir) => {
    const real = (p: string) => {
      const r = ask(req(FXP.REALPATH).string(p));
      assert.equal(r.byte(), FXP.NAME);
      r.u32();
      assert.equal(r.u32(), 1);
      return r.string();
    };
    assert.equal(real(`${dir}/./x/../`), Deno.realPathSync(dir));
    assert.equal(real("/no/such/../dir/."), "/no/dir");
    assert.equal(real("/"), "/");
  });
});
