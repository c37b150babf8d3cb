import assert from "node:assert/strict";
import { chmodSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  findRange,
  freeBase,
  hostIdMap,
  idmapJson,
  idmapLines,
  MAP_SIZE,
  shiftTree,
} from "./idmap.ts";

async function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-idmap-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("findRange() finds root's range and maps 65536 ids of it", () => {
  assert.deepEqual(findRange("root:100000:65536\n"), { hostBase: 100000, size: MAP_SIZE });
  assert.deepEqual(findRange("root:1000000:1000000000"), { hostBase: 1000000, size: MAP_SIZE });
});

Deno.test("findRange() skips other users, short ranges and malformed lines", () => {
  const text = [
    "alice:100000:65536",
    "root:50000:1000",
    "root:x:65536",
    "root",
    "",
    "  root:300000:65536  ",
    "root:400000:65536",
  ].join("\n");
  assert.deepEqual(findRange(text), { hostBase: 300000, size: MAP_SIZE });
  assert.deepEqual(findRange(text, "alice"), { hostBase: 100000, size: MAP_SIZE });
  assert.equal(findRange(text, "bob"), undefined);
  assert.equal(findRange(""), undefined);
  assert.equal(findRange("root:50000:65535"), undefined);
});

Deno.test("freeBase() starts at the default base when nothing is in the way", () => {
  assert.equal(freeBase(""), 1_000_000);
  assert.equal(freeBase("alice:100000:65536\nbob:165536:65536\n"), 1_000_000);
  assert.equal(freeBase("garbage\n:x:y\n"), 1_000_000);
});

Deno.test("freeBase() starts after the furthest end of overlapping entries", () => {
  assert.equal(freeBase("alice:1000000:65536"), 1_065_536);
  assert.equal(freeBase("alice:1000000:100000\nbob:1050000:100000"), 1_150_000);
  // Order does not matter, and an entry inside another does not pull the end back.
  assert.equal(freeBase("bob:1050000:10\nalice:1000000:100000"), 1_100_000);
  assert.equal(freeBase("alice:900000:200000\nbob:1000000:5"), 1_100_000);
});

Deno.test("freeBase() starts past entries far beyond the default range", () => {
  assert.equal(freeBase("far:2000000000:65536"), 2_000_065_536);
});

Deno.test({
  name: "freeBase() returns a base whose new range overlaps no existing entry",
  fn() {
    const text = "alice:500000000:10\nbob:1200000000:65536\n";
    const base = freeBase(text);
    const end = base + 1_000_000_000;
    for (const [s, c] of [[500_000_000, 10], [1_200_000_000, 65536]]) {
      assert.ok(end <= s || base >= s + c, `[${base}, ${end}) overlaps [${s}, ${s + c})`);
    }
  },
});

Deno.test("hostIdMap() creates a root range in missing subuid and subgid files", () =>
  withTempDir((dir) => {
    const files = { uid: join(dir, "subuid"), gid: join(dir, "subgid") };
    const map = hostIdMap(files);
    assert.deepEqual(map, {
      uid: { hostBase: 1_000_000, size: MAP_SIZE },
      gid: { hostBase: 1_000_000, size: MAP_SIZE },
    });
    assert.equal(readFileSync(files.uid, "utf8"), "root:1000000:1000000000\n");
    assert.equal(readFileSync(files.gid, "utf8"), "root:1000000:1000000000\n");
    // A second call finds the range it wrote and writes nothing more.
    assert.deepEqual(hostIdMap(files), map);
    assert.equal(readFileSync(files.uid, "utf8"), "root:1000000:1000000000\n");
  }));

Deno.test("hostIdMap() keeps an existing root range untouched", () =>
  withTempDir((dir) => {
    const files = { uid: join(dir, "subuid"), gid: join(dir, "subgid") };
    writeFileSync(files.uid, "alice:100000:65536\nroot:200000:65536\n");
    writeFileSync(files.gid, "root:300000:131072\n");
    assert.deepEqual(hostIdMap(files), {
      uid: { hostBase: 200000, size: MAP_SIZE },
      gid: { hostBase: 300000, size: MAP_SIZE },
    });
    assert.equal(readFileSync(files.uid, "utf8"), "alice:100000:65536\nroot:200000:65536\n");
    assert.equal(readFileSync(files.gid, "utf8"), "root:300000:131072\n");
  }));

Deno.test("hostIdMap() appends a root range after other users' entries without clobbering them", () =>
  withTempDir((dir) => {
    const files = { uid: join(dir, "subuid"), gid: join(dir, "subgid") };
    // No trailing newline on subuid; a too-small root range on subgid.
    writeFileSync(files.uid, "alice:1000000:65536\nbob:1065536:65536");
    writeFileSync(files.gid, "alice:1000000:65536\nroot:2000:10\n");
    const map = hostIdMap(files);
    assert.deepEqual(map.uid, { hostBase: 1_131_072, size: MAP_SIZE });
    assert.deepEqual(map.gid, { hostBase: 1_065_536, size: MAP_SIZE });
    assert.equal(
      readFileSync(files.uid, "utf8"),
      "alice:1000000:65536\nbob:1065536:65536\nroot:1131072:1000000000\n",
    );
    assert.equal(
      readFileSync(files.gid, "utf8"),
      "alice:1000000:65536\nroot:2000:10\nroot:1065536:1000000000\n",
    );
  }));

Deno.test("idmapLines() and idmapJson() describe the uid and gid maps", () => {
  const map = { uid: { hostBase: 100000, size: 65536 }, gid: { hostBase: 200000, size: 65536 } };
  assert.deepEqual(idmapLines(map), [
    "lxc.idmap = u 0 100000 65536",
    "lxc.idmap = g 0 200000 65536",
  ]);
  assert.deepEqual(JSON.parse(idmapJson(map)), [
    { Isuid: true, Isgid: false, Hostid: 100000, Nsid: 0, Maprange: 65536 },
    { Isuid: false, Isgid: true, Hostid: 200000, Nsid: 0, Maprange: 65536 },
  ]);
});

/** A small rootfs: dirs, files, a relative and an absolute symlink, a setuid and a setgid file. */
function makeTree(root: string, outside: string): string[] {
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, "etc", "empty"), { recursive: true });
  writeFileSync(join(root, "etc", "hostname"), "c1\n");
  writeFileSync(join(root, "bin", "busybox"), "#!/bin/sh\n");
  chmodSync(join(root, "bin", "busybox"), 0o755);
  writeFileSync(join(root, "bin", "su"), "");
  chmodSync(join(root, "bin", "su"), 0o4755);
  writeFileSync(join(root, "bin", "wall"), "");
  chmodSync(join(root, "bin", "wall"), 0o2755);
  symlinkSync("busybox", join(root, "bin", "sh"));
  symlinkSync(outside, join(root, "etc", "escape"));
  symlinkSync("/nonexistent", join(root, "etc", "dangling"));
  return [
    "",
    "bin",
    "bin/busybox",
    "bin/su",
    "bin/wall",
    "bin/sh",
    "etc",
    "etc/empty",
    "etc/hostname",
    "etc/escape",
    "etc/dangling",
  ].map((p) => join(root, p));
}

function owners(paths: string[]): [number, number][] {
  return paths.map((p) => {
    const st = lstatSync(p);
    return [st.uid, st.gid];
  });
}

Deno.test("shiftTree() shifts every file, dir and symlink into the map and back", () =>
  withTempDir((dir) => {
    const outside = join(dir, "outside");
    writeFileSync(outside, "host file\n");
    const root = join(dir, "rootfs");
    const paths = makeTree(root, outside);

    assert.equal(shiftTree(root, 100000, 200000), paths.length);
    assert.deepEqual(owners(paths), paths.map(() => [100000, 200000]));
    // A symlink is shifted itself; what it points at outside the tree is left alone.
    assert.equal(lstatSync(outside).uid, 0);
    assert.equal(lstatSync(outside).gid, 0);

    assert.equal(shiftTree(root, -100000, -200000), paths.length);
    assert.deepEqual(owners(paths), paths.map(() => [0, 0]));
  }));

Deno.test("shiftTree() keeps setuid and setgid bits, which chown clears", () =>
  withTempDir((dir) => {
    const root = join(dir, "rootfs");
    makeTree(root, join(dir, "outside"));
    mkdirSync(join(root, "shared"), { mode: 0o755 });
    chmodSync(join(root, "shared"), 0o2775);

    shiftTree(root, 100000, 100000);
    assert.equal(lstatSync(join(root, "bin", "su")).mode & 0o7777, 0o4755);
    assert.equal(lstatSync(join(root, "bin", "wall")).mode & 0o7777, 0o2755);
    assert.equal(lstatSync(join(root, "shared")).mode & 0o7777, 0o2775);
    assert.equal(lstatSync(join(root, "bin", "busybox")).mode & 0o7777, 0o755);

    shiftTree(root, -100000, -100000);
    assert.equal(lstatSync(join(root, "bin", "su")).mode & 0o7777, 0o4755);
    assert.equal(lstatSync(join(root, "bin", "su")).uid, 0);
    assert.equal(lstatSync(join(root, "bin", "wall")).mode & 0o7777, 0o2755);
  }));

Deno.test("shiftTree() leaves alone files whose ids would fall below zero", () =>
  withTempDir((dir) => {
    const root = join(dir, "rootfs");
    mkdirSync(root);
    writeFileSync(join(root, "mapped"), "");
    shiftTree(root, 100000, 100000);
    writeFileSync(join(root, "unmapped"), ""); // created by host root after the shift
    assert.equal(shiftTree(root, -100000, -100000), 2);
    assert.equal(lstatSync(join(root, "mapped")).uid, 0);
    assert.equal(lstatSync(join(root, "unmapped")).uid, 0);
    assert.equal(lstatSync(join(root, "unmapped")).gid, 0);
  }));
