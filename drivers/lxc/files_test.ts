import assert from "node:assert/strict";
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { BadRequest, Conflict, NotFound } from "../../agent/errors.ts";
import type { InstanceRecord } from "../../agent/store.ts";
import type { FileWrite } from "../files.ts";
import { IdShift, LxcFiles, resolveInRoot } from "./files.ts";

const HOST_BASE = 1_000_000;
const SHIFTED = JSON.stringify([
  { Isuid: true, Isgid: false, Hostid: HOST_BASE, Nsid: 0, Maprange: 65536 },
  { Isuid: false, Isgid: true, Hostid: HOST_BASE, Nsid: 0, Maprange: 65536 },
]);

function record(name: string, idmap = "[]"): InstanceRecord {
  return {
    name,
    type: "container",
    architecture: "x86_64",
    description: "",
    config: { "volatile.idmap.current": idmap },
    devices: {},
    profiles: [],
    ephemeral: false,
    created_at: "",
    last_used_at: "",
  };
}

interface Fixture {
  /** The temp dir: `rootfs/` is the container's root, `host/` stands for the host outside it. */
  dir: string;
  rootfs: string;
  files: LxcFiles;
}

/** A small rootfs (etc/passwd, root/, tmp/) beside a "host" dir holding a secret. */
async function withRootfs(fn: (f: Fixture) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-files-" });
  try {
    const rootfs = join(dir, "rootfs");
    for (const d of ["etc", "root", "tmp", "a/b"]) mkdirSync(join(rootfs, d), { recursive: true });
    writeFileSync(join(rootfs, "etc", "passwd"), "inside\n");
    mkdirSync(join(dir, "host", "etc"), { recursive: true });
    writeFileSync(join(dir, "host", "etc", "passwd"), "HOST SECRET\n");
    await fn({ dir, rootfs, files: new LxcFiles(() => rootfs) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const text = (s: string) => new TextEncoder().encode(s);
const file = (data: string, extra: Partial<FileWrite> = {}): FileWrite => ({
  type: "file",
  append: false,
  data: text(data),
  ...extra,
});
const read = async (files: LxcFiles, inst: InstanceRecord, path: string) =>
  new TextDecoder().decode(await files.read(inst, path));

Deno.test("paths spelt with .. stop at the container's root", async () => {
  await withRootfs(async ({ files }) => {
    const c1 = record("c1");
    assert.equal(await read(files, c1, "/../../etc/passwd"), "inside\n");
    assert.equal(await read(files, c1, "../../../../../etc/passwd"), "inside\n");
    assert.equal(await read(files, c1, "/a/b/../../../etc/./passwd"), "inside\n");
  });
});

Deno.test("symlinks to / or /etc resolve inside the rootfs, absolute or relative", async () => {
  await withRootfs(async ({ dir, rootfs, files }) => {
    const c1 = record("c1");
    symlinkSync("/etc", join(rootfs, "etc-link"));
    symlinkSync("../../..", join(rootfs, "a", "b", "up"));
    symlinkSync("/", join(rootfs, "root", "slash"));
    symlinkSync(join(dir, "host"), join(rootfs, "root", "hostdir"));
    symlinkSync("/etc/passwd", join(rootfs, "root", "pw"));
    assert.equal(await read(files, c1, "/etc-link/passwd"), "inside\n");
    assert.equal(await read(files, c1, "/a/b/up/etc/passwd"), "inside\n");
    assert.equal(await read(files, c1, "/a/b/up/../../etc/passwd"), "inside\n");
    assert.equal(await read(files, c1, "/root/pw"), "inside\n");
    // The host dir's absolute path does not exist inside the rootfs.
    await assert.rejects(files.read(c1, "/root/hostdir/etc/passwd"), NotFound);

    // Writes through the links land in the rootfs too.
    await files.write(c1, "/root/slash/tmp/through", file("x"));
    assert.equal(readFileSync(join(rootfs, "tmp", "through"), "utf8"), "x");
    await files.write(c1, "/a/b/up/up-file", file("y"));
    assert.equal(readFileSync(join(rootfs, "up-file"), "utf8"), "y");
    await assert.rejects(files.write(c1, "/root/hostdir/etc/passwd", file("pwned")), NotFound);
    // A link whose target climbs far above the root: writing through it stays inside.
    symlinkSync("../../../../../../../../planted", join(rootfs, "root", "far"));
    await files.write(c1, "/root/far", file("z"));
    assert.equal(readFileSync(join(rootfs, "planted"), "utf8"), "z");
    assert.equal(readFileSync(join(dir, "host", "etc", "passwd"), "utf8"), "HOST SECRET\n");
    assert.deepEqual(readdirSync(dir).sort(), ["host", "rootfs"]);
  });
});

Deno.test("a symlink loop is refused, not followed forever", async () => {
  await withRootfs(async ({ rootfs, files }) => {
    symlinkSync("/loop2", join(rootfs, "loop1"));
    symlinkSync("loop1", join(rootfs, "loop2"));
    symlinkSync("self/x", join(rootfs, "self"));
    const c1 = record("c1");
    await assert.rejects(files.read(c1, "/loop1"), /Too many levels of symbolic links/);
    await assert.rejects(files.write(c1, "/self/y", file("a")), BadRequest);
    // Removing the link itself does not follow it.
    await files.remove(c1, "/loop1");
    assert.equal(lstatSync(join(rootfs, "loop2")).isSymbolicLink(), true);
    assert.deepEqual(readdirSync(rootfs).filter((n) => n.startsWith("loop")), ["loop2"]);
  });
});

Deno.test("resolveInRoot() reports the first missing directory and non-directories", async () => {
  await withRootfs(({ rootfs }) => {
    const missing = resolveInRoot(rootfs, "/nope/deeper/x", true);
    assert.deepEqual(missing, { ok: false, at: "/nope", notDirectory: false });
    const notDir = resolveInRoot(rootfs, "/etc/passwd/x", true);
    assert.deepEqual(notDir, { ok: false, at: "/etc/passwd", notDirectory: true });
    const fresh = resolveInRoot(rootfs, "/etc/new", true);
    assert.equal(fresh.ok && fresh.stat, undefined);
    const top = resolveInRoot(rootfs, "/..", true);
    assert.equal(top.ok && top.inside, "/");
  });
});

Deno.test("ids shift into the container's map on write and back out on stat", async () => {
  await withRootfs(async ({ rootfs, files }) => {
    const c1 = record("c1", SHIFTED);
    await files.write(c1, "/root/owned", file("x", { uid: 5, gid: 7, mode: 0o640 }));
    const st = lstatSync(join(rootfs, "root", "owned"));
    assert.equal(st.uid, HOST_BASE + 5);
    assert.equal(st.gid, HOST_BASE + 7);
    assert.equal(st.mode & 0o7777, 0o640);
    const info = await files.stat(c1, "/root/owned");
    assert.deepEqual([info.uid, info.gid, info.mode, info.type], [5, 7, 0o640, "file"]);

    // New files default to root inside, which is the map's base on the host.
    await files.write(c1, "/root/plain", file("y"));
    const plain = lstatSync(join(rootfs, "root", "plain"));
    assert.deepEqual([plain.uid, plain.gid, plain.mode & 0o777], [HOST_BASE, HOST_BASE, 0o644]);

    // A file written on the host as (shifted) uid 33 shows as 33 inside.
    writeFileSync(join(rootfs, "tmp", "www"), "w");
    chownSync(join(rootfs, "tmp", "www"), HOST_BASE + 33, HOST_BASE + 33);
    assert.equal((await files.stat(c1, "/tmp/www")).uid, 33);
    // Host ids outside the map show as the overflow id.
    chownSync(join(rootfs, "tmp", "www"), 0, 0);
    assert.equal((await files.stat(c1, "/tmp/www")).gid, 65534);

    await assert.rejects(
      files.write(c1, "/root/far", file("z", { uid: 70000 })),
      /UID 70000 is outside the instance's id map \(0-65535\)/,
    );
    // Symlinks and directories are shifted too.
    await files.write(c1, "/root/link", { type: "symlink", append: false, data: text("owned") });
    assert.equal(lstatSync(join(rootfs, "root", "link")).uid, HOST_BASE);
    await files.write(c1, "/root/dir", { type: "directory", append: false, uid: 1, gid: 2 });
    const dir = lstatSync(join(rootfs, "root", "dir"));
    assert.deepEqual([dir.uid, dir.gid, dir.mode & 0o777], [HOST_BASE + 1, HOST_BASE + 2, 0o755]);
  });
});

Deno.test("a privileged container's ids are the host's", () => {
  const ids = IdShift.of(record("p"));
  assert.equal(ids.host(70000, "uid"), 70000);
  assert.equal(ids.inside(1000, "gid"), 1000);
});

Deno.test("write() appends, overwrites, and keeps or updates owner and mode", async () => {
  await withRootfs(async ({ rootfs, files }) => {
    const c1 = record("c1");
    await files.write(c1, "/tmp/log", file("a", { mode: 0o600 }));
    await files.write(c1, "/tmp/log", file("b", { append: true }));
    assert.equal(await read(files, c1, "/tmp/log"), "ab");
    await files.write(c1, "/tmp/log", file("c"));
    assert.equal(await read(files, c1, "/tmp/log"), "c");
    // Unasked mode is kept on an existing file; an asked one replaces it.
    assert.equal(lstatSync(join(rootfs, "tmp", "log")).mode & 0o7777, 0o600);
    await files.write(c1, "/tmp/log", file("d", { mode: 0o4755 }));
    assert.equal(lstatSync(join(rootfs, "tmp", "log")).mode & 0o7777, 0o4755);
    // Append creates a missing file; writing through a symlink writes its target.
    await files.write(c1, "/tmp/new", file("n", { append: true }));
    assert.equal(await read(files, c1, "/tmp/new"), "n");
    symlinkSync("new", join(rootfs, "tmp", "alias"));
    await files.write(c1, "/tmp/alias", file("via link"));
    assert.equal(await read(files, c1, "/tmp/new"), "via link");
    assert.equal(readlinkSync(join(rootfs, "tmp", "alias")), "new");
    // Binary content is kept byte for byte.
    const bytes = crypto.getRandomValues(new Uint8Array(65536));
    await files.write(c1, "/tmp/bin", { type: "file", append: false, data: bytes });
    assert.deepEqual(await files.read(c1, "/tmp/bin"), bytes);
  });
});

Deno.test("write() refuses a file over a directory and a missing parent, naming them", async () => {
  await withRootfs(async ({ files }) => {
    const c1 = record("c1");
    await assert.rejects(files.write(c1, "/tmp", file("x")), (err: Error) => {
      assert.ok(err instanceof Conflict);
      assert.match(err.message, /"\/tmp" is a directory in instance "c1"/);
      return true;
    });
    await assert.rejects(files.write(c1, "/nope/deeper/x", file("x")), (err: Error) => {
      assert.ok(err instanceof NotFound);
      assert.equal(err.message, 'Parent directory "/nope" not found in instance "c1"');
      return true;
    });
    await assert.rejects(files.write(c1, "/etc/passwd/x", file("x")), /is not a directory/);
    await assert.rejects(
      files.write(c1, "/etc/passwd", { type: "directory", append: false }),
      /not a directory/,
    );
    await assert.rejects(
      files.write(c1, "/etc/passwd", { type: "symlink", append: false, data: text("x") }),
      /not a symlink/,
    );
  });
});

Deno.test("stat() lists directories sorted and reports symlinks without following them", async () => {
  await withRootfs(async ({ rootfs, files }) => {
    const c1 = record("c1");
    await files.write(c1, "/root/sub", { type: "directory", append: false });
    await files.write(c1, "/root/z", file("z"));
    await files.write(c1, "/root/link", { type: "symlink", append: false, data: text("../etc") });
    const dir = await files.stat(c1, "/root");
    assert.equal(dir.type, "directory");
    assert.deepEqual(dir.entries, ["link", "sub", "z"]);
    assert.deepEqual((await files.stat(c1, "/")).entries, ["a", "etc", "root", "tmp"]);
    const link = await files.stat(c1, "/root/link");
    assert.equal(link.type, "symlink");
    assert.equal(link.target, "../etc");
    // Existing directory: mode is updated, nothing else changes.
    await files.write(c1, "/root/sub", { type: "directory", append: false, mode: 0o700 });
    assert.equal(lstatSync(join(rootfs, "root", "sub")).mode & 0o777, 0o700);
    // Re-pointing an existing symlink replaces it.
    await files.write(c1, "/root/link", { type: "symlink", append: false, data: text("/tmp") });
    assert.equal(readlinkSync(join(rootfs, "root", "link")), "/tmp");
    await assert.rejects(files.stat(c1, "/missing"), (err: Error) => {
      assert.ok(err instanceof NotFound);
      assert.equal(err.message, 'File "/missing" not found in instance "c1"');
      return true;
    });
  });
});

Deno.test("remove() takes files, symlinks and empty directories only", async () => {
  await withRootfs(async ({ rootfs, files }) => {
    const c1 = record("c1");
    symlinkSync("/etc/passwd", join(rootfs, "root", "pw"));
    await files.remove(c1, "/root/pw");
    assert.equal(existsSync(join(rootfs, "etc", "passwd")), true);
    await assert.rejects(files.remove(c1, "/a"), /Directory "\/a" is not empty/);
    await files.remove(c1, "/a/b");
    await files.remove(c1, "/a");
    await files.remove(c1, "/etc/passwd");
    assert.deepEqual(readdirSync(rootfs).sort(), ["etc", "root", "tmp"]);
    await assert.rejects(files.remove(c1, "/"), /Cannot remove the root directory/);
    await assert.rejects(files.remove(c1, "/.."), BadRequest);
    await assert.rejects(files.remove(c1, "/tmp/.."), BadRequest);
    await assert.rejects(files.remove(c1, "/etc/passwd"), /File "\/etc\/passwd" not found/);
  });
});

Deno.test("read() refuses directories and a missing rootfs is a clear error", async () => {
  await withRootfs(async ({ files }) => {
    await assert.rejects(files.read(record("c1"), "/etc"), /is a directory/);
    const gone = new LxcFiles(() => "/nonexistent/rootfs");
    await assert.rejects(gone.stat(record("c9"), "/"), /root file system of instance "c9"/);
  });
});
