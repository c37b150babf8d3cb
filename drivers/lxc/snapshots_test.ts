import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { NotFound } from "../../contract/errors.ts";
import type { InstanceSpec } from "../driver.ts";
import { Runner } from "../runner.ts";
import { LxcSnapshots } from "./snapshots.ts";

const inst: InstanceSpec = {
  name: "c1",
  type: "container",
  architecture: "x86_64",
  config: {},
  devices: {},
};

/** A container dir holding a small rootfs with the things a copy must keep. */
async function withContainerDir(
  fn: (snaps: LxcSnapshots, dir: string, argvs: string[][]) => Promise<void>,
): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "outpost-snapshots-" });
  try {
    const dir = join(base, inst.name);
    const rootfs = join(dir, "rootfs");
    await Deno.mkdir(join(rootfs, "etc"), { recursive: true });
    await Deno.mkdir(join(rootfs, "bin"));
    await Deno.writeTextFile(join(rootfs, "etc", "motd"), "hello\n");
    await Deno.writeTextFile(join(rootfs, "bin", "tool"), "#!/bin/sh\n");
    await Deno.chmod(join(rootfs, "bin", "tool"), 0o4755);
    // Shifted ownership, as an unprivileged container's rootfs has it.
    await Deno.chown(join(rootfs, "etc", "motd"), 1_000_000, 1_000_005);
    await Deno.chown(join(rootfs, "etc"), 1_000_000, 1_000_000);
    await Deno.symlink("/etc/motd", join(rootfs, "motd-link"));
    await Deno.symlink("/nowhere", join(rootfs, "dangling"));
    await Deno.link(join(rootfs, "etc", "motd"), join(rootfs, "etc", "motd.hard"));
    await sh("mkfifo", join(rootfs, "fifo"));
    await sh("mknod", join(rootfs, "null"), "c", "1", "3");
    const runner = new Runner();
    const argvs: string[][] = [];
    runner.onRun((argv) => argvs.push(argv));
    await fn(new LxcSnapshots((name) => join(base, name), runner), dir, argvs);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

async function sh(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stderr: "piped" }).output();
  if (out.code !== 0) throw new Error(`${cmd} failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** Entries a failed or finished operation must not leave in the container dir. */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((e) => e.startsWith("."));
}

Deno.test("create() copies the rootfs with cp -a, keeping owners, modes, links and devices", async () => {
  await withContainerDir(async (snaps, dir, argvs) => {
    await snaps.create(inst, "s0");
    const copy = join(dir, "snapshots", "s0", "rootfs");
    // One copy, into a temporary dir beside the rootfs, renamed into place afterwards.
    assert.equal(argvs.length, 1);
    assert.deepEqual(argvs[0].slice(0, 5), [
      "cp",
      "-a",
      "--reflink=auto",
      "--",
      join(dir, "rootfs"),
    ]);
    assert.match(argvs[0][5], new RegExp(`^${dir}/\\.snapshot-[0-9a-f-]+/rootfs$`));
    assert.equal(await Deno.readTextFile(join(copy, "etc", "motd")), "hello\n");
    const motd = await Deno.lstat(join(copy, "etc", "motd"));
    assert.equal(motd.uid, 1_000_000);
    assert.equal(motd.gid, 1_000_005);
    assert.equal(motd.nlink, 2, "hard links stay hard links");
    assert.equal((await Deno.lstat(join(copy, "etc"))).uid, 1_000_000);
    assert.equal((await Deno.lstat(join(copy, "bin", "tool"))).mode! & 0o7777, 0o4755);
    assert.equal(await Deno.readLink(join(copy, "motd-link")), "/etc/motd");
    assert.equal(await Deno.readLink(join(copy, "dangling")), "/nowhere");
    assert.ok((await Deno.lstat(join(copy, "fifo"))).isFifo);
    const dev = await Deno.lstat(join(copy, "null"));
    assert.ok(dev.isCharDevice);
    assert.equal(dev.rdev, (await Deno.lstat(join(dir, "rootfs", "null"))).rdev);
    assert.equal((await Deno.stat(join(dir, "snapshots"))).mode! & 0o777, 0o700);
    assert.deepEqual(leftovers(dir), []);
  });
});

Deno.test("create() refuses a snapshot whose storage exists, and a failed copy leaves nothing", async () => {
  await withContainerDir(async (snaps, dir) => {
    await snaps.create(inst, "s0");
    await assert.rejects(snaps.create(inst, "s0"), /already exists/);

    await Deno.rename(join(dir, "rootfs"), join(dir, "elsewhere"));
    await assert.rejects(snaps.create(inst, "s1"), /cp failed/);
    assert.deepEqual(readdirSync(join(dir, "snapshots")), ["s0"]);
    assert.deepEqual(leftovers(dir), []);
  });
});

Deno.test("restore() swaps in a copy of the snapshot's rootfs and keeps the snapshot", async () => {
  await withContainerDir(async (snaps, dir) => {
    const rootfs = join(dir, "rootfs");
    await snaps.create(inst, "s0");
    await Deno.writeTextFile(join(rootfs, "etc", "motd"), "changed\n");
    await Deno.writeTextFile(join(rootfs, "new-file"), "added after the snapshot\n");
    await Deno.remove(join(rootfs, "bin", "tool"));

    await snaps.restore(inst, "s0");
    assert.equal(await Deno.readTextFile(join(rootfs, "etc", "motd")), "hello\n");
    assert.equal(existsSync(join(rootfs, "new-file")), false);
    assert.equal((await Deno.lstat(join(rootfs, "bin", "tool"))).mode! & 0o7777, 0o4755);
    assert.equal((await Deno.lstat(join(rootfs, "etc", "motd"))).uid, 1_000_000);
    // The snapshot is untouched: a second restore works from the same state.
    await Deno.writeTextFile(join(rootfs, "etc", "motd"), "changed again\n");
    await snaps.restore(inst, "s0");
    assert.equal(await Deno.readTextFile(join(rootfs, "etc", "motd")), "hello\n");
    assert.deepEqual(leftovers(dir), []);
  });
});

Deno.test("restore() of missing snapshot storage fails and leaves the rootfs alone", async () => {
  await withContainerDir(async (snaps, dir) => {
    await assert.rejects(snaps.restore(inst, "nope"), NotFound);
    assert.equal(await Deno.readTextFile(join(dir, "rootfs", "etc", "motd")), "hello\n");
    assert.deepEqual(leftovers(dir), []);
  });
});

Deno.test("rename() moves the storage and refuses a taken name; delete() removes it", async () => {
  await withContainerDir(async (snaps, dir) => {
    await snaps.create(inst, "s0");
    await snaps.create(inst, "s1");
    await assert.rejects(snaps.rename(inst, "s0", "s1"), /already exists/);
    await assert.rejects(snaps.rename(inst, "gone", "s2"), NotFound);
    await snaps.rename(inst, "s0", "first snapshot");
    assert.deepEqual(readdirSync(join(dir, "snapshots")).sort(), ["first snapshot", "s1"]);
    assert.equal(
      await Deno.readTextFile(join(dir, "snapshots", "first snapshot", "rootfs", "etc", "motd")),
      "hello\n",
    );

    await snaps.delete(inst, "first snapshot");
    await snaps.delete(inst, "first snapshot"); // already gone: nothing to do
    assert.deepEqual(readdirSync(join(dir, "snapshots")), ["s1"]);
  });
});

/** Deno has no xattr API; python3 (when the host has it) sets and reads them for this test. */
const python = new Deno.Command("python3", { args: ["--version"], stdout: "null", stderr: "null" })
  .outputSync().success;

async function xattr(path: string, value?: string): Promise<string> {
  const code = value === undefined
    ? `import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], "user.outpost").decode())`
    : `import os,sys; os.setxattr(sys.argv[1], "user.outpost", sys.argv[2].encode())`;
  const out = await new Deno.Command("python3", {
    args: ["-c", code, path, ...(value === undefined ? [] : [value])],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test({
  name: "create() and restore() keep extended attributes (skipped without python3)",
  ignore: !python,
  async fn() {
    await withContainerDir(async (snaps, dir) => {
      const motd = join(dir, "rootfs", "etc", "motd");
      await xattr(motd, "kept");
      await snaps.create(inst, "s0");
      assert.equal(await xattr(join(dir, "snapshots", "s0", "rootfs", "etc", "motd")), "kept");
      await xattr(motd, "changed");
      await snaps.restore(inst, "s0");
      assert.equal(await xattr(motd), "kept");
    });
  },
});
