import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Conflict, InvalidState, NotFound } from "../../contract/errors.ts";
import type { InstanceSpec } from "../driver.ts";
import { Runner } from "../runner.ts";
import { QemuDriver } from "./driver.ts";
import { QmpClient } from "./qmp.ts";
import { MAP_FILE } from "./snapshots.ts";

const HAS_QEMU_IMG = (await new Deno.Command("sh", {
  args: ["-c", "command -v qemu-img && command -v qemu-io && command -v qemu-system-x86_64"],
  stdout: "null",
}).output()).success;

function vm(name: string): InstanceSpec {
  return { name, type: "virtual-machine", architecture: "x86_64", config: {}, devices: {} };
}
const v1 = vm("v1");

interface Fixture {
  driver: QemuDriver;
  base: string;
  /** The VM dir of `v1`. */
  dir: string;
  disk: string;
  /** Every `qemu-img` argv run so far. */
  imgCalls: string[][];
}

/**
 * A stopped VM `v1` as the driver makes one: a qcow2 overlay on a raw image (4 MiB of zeros), a
 * boot.json and a UEFI variable store, in a fresh temp dir the driver is pointed at.
 */
async function withVm(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "outpost-vm-snapshots-" });
  const runner = new Runner();
  const imgCalls: string[][] = [];
  runner.onRun((argv) => {
    if (argv[0] === "qemu-img") imgCalls.push(argv);
  });
  const driver = new QemuDriver({
    path: join(base, "virtual-machines"),
    runner,
    serverConfig: () => ({}),
    probeCache: join(base, "kvm-probe.json"),
  });
  try {
    const dir = driver.dir(v1.name);
    await Deno.mkdir(dir, { recursive: true });
    const image = join(base, "rootfs.img");
    await sh("qemu-img", "create", "-q", "-f", "raw", image, "4M");
    const disk = join(dir, "disk.qcow2");
    await sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "raw", disk);
    await Deno.writeTextFile(join(dir, "boot.json"), JSON.stringify({ kind: "uefi" }));
    await Deno.writeTextFile(join(dir, "OVMF_VARS.fd"), "vars-0");
    await fn({ driver, base, dir, disk, imgCalls });
  } finally {
    driver.close();
    await Deno.remove(base, { recursive: true });
  }
}

function vmTest(name: string, fn: (f: Fixture) => Promise<void>): void {
  Deno.test({ name, ignore: !HAS_QEMU_IMG, fn: () => withVm(fn) });
}

async function sh(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/** Fills the disk's first 64 KiB with `byte`. */
async function fill(disk: string, byte: number): Promise<void> {
  await sh("qemu-io", "-f", "qcow2", "-c", `write -P ${byte} 0 64k`, disk);
}

/** Whether the disk's first 64 KiB are all `byte` (as the guest would read them). */
async function holds(disk: string, byte: number): Promise<boolean> {
  const out = await new Deno.Command("qemu-io", {
    args: ["-f", "qcow2", "-c", `read -P ${byte} 0 64k`, disk],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

async function tags(disk: string): Promise<string[]> {
  const info = JSON.parse(await sh("qemu-img", "info", "--output=json", "-U", disk));
  return (info.snapshots ?? []).map((s: { name: string }) => s.name);
}

async function map(dir: string): Promise<Record<string, string>> {
  const entries = JSON.parse(await Deno.readTextFile(join(dir, MAP_FILE)));
  return Object.fromEntries(entries.map((e: { name: string; tag: string }) => [e.name, e.tag]));
}

/** Files a finished operation must not leave in the VM dir. */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((e) => e.startsWith("."));
}

vmTest(
  "create() takes qcow2 internal snapshots under unique tags; restore() brings each one's data back",
  async ({ driver, dir, disk, imgCalls }) => {
    const snaps = driver.snapshots;
    await fill(disk, 0xab);
    await snaps.create(v1, "s1");
    await fill(disk, 0xcd);
    await snaps.create(v1, "s2");
    await fill(disk, 0xef);

    const m = await map(dir);
    assert.deepEqual(Object.keys(m).sort(), ["s1", "s2"]);
    assert.match(m.s1, /^outpost-[0-9a-f-]{36}$/);
    assert.notEqual(m.s1, m.s2);
    assert.deepEqual((await tags(disk)).sort(), [m.s1, m.s2].sort());
    assert.ok(imgCalls.some((a) => a.join(" ") === `qemu-img snapshot -c ${m.s1} ${disk}`));

    await snaps.restore(v1, "s1");
    assert.ok(await holds(disk, 0xab));
    assert.equal(await holds(disk, 0xef), false);
    await snaps.restore(v1, "s2");
    assert.ok(await holds(disk, 0xcd));
    // A restore keeps the snapshots.
    assert.equal((await tags(disk)).length, 2);
    assert.deepEqual(leftovers(dir), []);
  },
);

vmTest(
  "a snapshot keeps the UEFI variables beside it and restore() puts them back",
  async ({ driver, dir }) => {
    await driver.snapshots.create(v1, "s1");
    const tag = (await map(dir)).s1;
    assert.equal(
      await Deno.readTextFile(join(dir, "snapshots", tag, "OVMF_VARS.fd")),
      "vars-0",
    );
    await Deno.writeTextFile(join(dir, "OVMF_VARS.fd"), "vars-1");
    await driver.snapshots.restore(v1, "s1");
    assert.equal(await Deno.readTextFile(join(dir, "OVMF_VARS.fd")), "vars-0");
    assert.deepEqual(leftovers(dir), []);
  },
);

vmTest(
  "rename() changes only the map: the internal tag and its data stay",
  async ({ driver, dir, disk, imgCalls }) => {
    const snaps = driver.snapshots;
    await fill(disk, 0xab);
    await snaps.create(v1, "s1");
    await snaps.create(v1, "other");
    await fill(disk, 0xcd);
    const before = await map(dir);
    const calls = imgCalls.length;
    await snaps.rename(v1, "s1", "renamed");
    assert.equal(imgCalls.length, calls, "a rename runs no qemu-img");
    const after = await map(dir);
    assert.equal(after.renamed, before.s1);
    assert.equal(after.s1, undefined);
    await assert.rejects(snaps.restore(v1, "s1"), NotFound);
    await snaps.restore(v1, "renamed");
    assert.ok(await holds(disk, 0xab));

    await assert.rejects(snaps.rename(v1, "renamed", "other"), Conflict);
    await assert.rejects(snaps.rename(v1, "nope", "x"), NotFound);
    assert.deepEqual(await map(dir), after);
  },
);

vmTest(
  "create() refuses a name it has; restore() refuses an unknown snapshot and a running VM",
  async ({ driver, dir, disk }) => {
    const snaps = driver.snapshots;
    // Any name Incus allows is a map key, not a path or a tag.
    for (const name of ["__proto__", "with space", "ünï", "constructor"]) {
      await snaps.create(v1, name);
    }
    assert.deepEqual(
      Object.keys(await map(dir)).sort(),
      ["__proto__", "constructor", "with space", "ünï"].sort(),
    );
    await assert.rejects(snaps.create(v1, "__proto__"), Conflict);
    assert.equal((await tags(disk)).length, 4);
    await assert.rejects(snaps.restore(v1, "nope"), /Storage for snapshot "v1\/nope" is missing/);

    // A recorded snapshot whose internal snapshot is gone from the disk is NotFound too.
    await sh("qemu-img", "snapshot", "-d", (await map(dir))["with space"], disk);
    await assert.rejects(snaps.restore(v1, "with space"), NotFound);

    // A damaged map is named, not taken for an empty one.
    await Deno.writeTextFile(join(dir, MAP_FILE), "{not json");
    await assert.rejects(snaps.create(v1, "x"), /snapshot map of VM "v1" .* is damaged/);
  },
);

vmTest(
  "delete() removes the internal snapshot, its UEFI variables and its map entry",
  async ({ driver, dir, disk }) => {
    const snaps = driver.snapshots;
    await snaps.create(v1, "s1");
    await snaps.create(v1, "s2");
    const { s1, s2 } = await map(dir);
    await snaps.delete(v1, "s1");
    assert.deepEqual(await tags(disk), [s2]);
    assert.deepEqual(await map(dir), { s2 });
    assert.equal(existsSync(join(dir, "snapshots", s1)), false);
    assert.ok(existsSync(join(dir, "snapshots", s2, "OVMF_VARS.fd")));
    // A snapshot with no storage simply goes.
    await snaps.delete(v1, "s1");
    assert.deepEqual(await map(dir), { s2 });
  },
);

vmTest(
  "recover() deletes tags and map entries without a record and reports records without storage",
  async ({ driver, dir, disk }) => {
    const snaps = driver.snapshots;
    await snaps.create(v1, "kept");
    await snaps.create(v1, "unrecorded");
    await snaps.create(v1, "lost");
    const m = await map(dir);
    // A create killed between its internal snapshot and the map write, and a half-written map.
    const orphan = `outpost-${crypto.randomUUID()}`;
    await sh("qemu-img", "snapshot", "-c", orphan, disk);
    await Deno.mkdir(join(dir, "snapshots", orphan));
    await Deno.writeTextFile(join(dir, `.snapshots-${crypto.randomUUID()}.json`), "[");
    // Someone else's internal snapshot is left alone.
    await sh("qemu-img", "snapshot", "-c", "mine", disk);
    // A recorded snapshot whose internal snapshot went.
    await sh("qemu-img", "snapshot", "-d", m.lost, disk);

    const report = await driver.recover(v1, ["kept", "lost", "never-taken"]);
    assert.deepEqual(report.missingSnapshots, ["lost", "never-taken"]);
    assert.equal(report.actions.length, 4, report.actions.join("\n"));
    assert.deepEqual(await map(dir), { kept: m.kept });
    assert.deepEqual((await tags(disk)).sort(), [m.kept, "mine"].sort());
    assert.deepEqual(readdirSync(join(dir, "snapshots")), [m.kept]);
    assert.deepEqual(leftovers(dir), []);

    // Nothing left to do the second time.
    assert.deepEqual(await driver.recover(v1, ["kept"]), { actions: [], missingSnapshots: [] });
  },
);

vmTest(
  "copy() with from sets the copy's disk to that snapshot and keeps only the snapshots named",
  async ({ driver, dir, disk }) => {
    const snaps = driver.snapshots;
    await fill(disk, 0xab);
    await snaps.create(v1, "s1");
    await Deno.writeTextFile(join(dir, "OVMF_VARS.fd"), "vars-1");
    await fill(disk, 0xcd);
    await snaps.create(v1, "s2");
    await fill(disk, 0xef);
    const m = await map(dir);

    // NAME/SNAP: the snapshot's data and variables, no snapshots.
    await driver.copy(v1, vm("c1"), { from: "s1", snapshots: [] });
    const c1 = driver.dir("c1");
    assert.ok(await holds(join(c1, "disk.qcow2"), 0xab));
    assert.deepEqual(await tags(join(c1, "disk.qcow2")), []);
    assert.equal(await Deno.readTextFile(join(c1, "OVMF_VARS.fd")), "vars-0");
    assert.equal(existsSync(join(c1, MAP_FILE)), false);
    assert.equal(existsSync(join(c1, "snapshots")), false);
    assert.ok(existsSync(join(c1, "boot.json")));

    // The instance with one of its snapshots: the current data, and s2 restorable in the copy.
    await driver.copy(v1, vm("c2"), { snapshots: ["s2"] });
    const c2 = driver.dir("c2");
    assert.ok(await holds(join(c2, "disk.qcow2"), 0xef));
    assert.deepEqual(await tags(join(c2, "disk.qcow2")), [m.s2]);
    assert.deepEqual(await map(c2), { s2: m.s2 });
    assert.equal(await Deno.readTextFile(join(c2, "OVMF_VARS.fd")), "vars-1");
    await driver.snapshots.restore(vm("c2"), "s2");
    assert.ok(await holds(join(c2, "disk.qcow2"), 0xcd));
    await assert.rejects(driver.snapshots.restore(vm("c2"), "s1"), NotFound);

    // The source is untouched.
    assert.ok(await holds(disk, 0xef));
    assert.equal((await tags(disk)).length, 2);

    // A snapshot with no storage is refused before anything is copied.
    await assert.rejects(driver.copy(v1, vm("c3"), { from: "nope", snapshots: [] }), NotFound);
    await assert.rejects(driver.copy(v1, vm("c3"), { snapshots: ["s1", "nope"] }), NotFound);
    assert.equal(existsSync(driver.dir("c3")), false);
  },
);

vmTest(
  "a running VM is snapshotted through QMP without a guest agent; restore refuses, copy goes live, recover waits",
  async ({ driver, dir, disk, imgCalls }) => {
    const snaps = driver.snapshots;
    await fill(disk, 0xab);
    // A real QEMU holding the disk as the driver starts it (drive id "root"), its vCPUs not
    // started: nothing to boot, and no guest agent to answer.
    await sh(
      "qemu-system-x86_64",
      ...["-machine", "q35", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display"],
      ...["none", "-S", "-daemonize", "-pidfile", join(dir, "qemu.pid")],
      ...["-qmp", `unix:${join(dir, "qmp.sock")},server=on,wait=off`],
      // A second monitor for the test itself (the driver holds the first).
      ...["-qmp", `unix:${join(dir, "test-qmp.sock")},server=on,wait=off`],
      ...["-drive", `file=${disk},if=none,id=root,format=qcow2`],
      ...["-device", "virtio-blk-pci,drive=root"],
    );
    try {
      assert.equal(await driver.status(v1), "Running");
      await snaps.create(v1, "live");
      await snaps.create(v1, "gone");
      const m = await map(dir);
      assert.deepEqual((await tags(disk)).sort(), [m.live, m.gone].sort());
      await snaps.delete(v1, "gone");
      assert.deepEqual(await tags(disk), [m.live]);
      assert.ok(!imgCalls.some((a) => a[1] === "snapshot"), "no qemu-img on a running VM's disk");

      // Writes after the snapshot, through QEMU (it holds the disk's lock), as a guest's would.
      const qmp = await QmpClient.connect(join(dir, "test-qmp.sock"));
      try {
        await qmp.execute("human-monitor-command", {
          "command-line": 'qemu-io root "write -P 0xcd 0 64k"',
        });
      } finally {
        qmp.close();
      }

      await assert.rejects(snaps.restore(v1, "live"), InvalidState);
      // A running VM is copied live without its snapshots (with them it is refused): the copy
      // holds what the disk holds now, or the snapshot's data, and no temporary tag stays behind.
      await assert.rejects(driver.copy(v1, vm("c0"), { snapshots: ["live"] }), InvalidState);
      await driver.copy(v1, vm("c1"), { snapshots: [] });
      assert.ok(await holds(join(driver.dir("c1"), "disk.qcow2"), 0xcd));
      assert.deepEqual(await tags(join(driver.dir("c1"), "disk.qcow2")), []);
      await driver.copy(v1, vm("c2"), { from: "live", snapshots: [] });
      assert.ok(await holds(join(driver.dir("c2"), "disk.qcow2"), 0xab));
      assert.deepEqual(await tags(disk), [m.live]);
      const calls = imgCalls.length;
      assert.deepEqual(await driver.recover(v1, ["live", "unknown"]), {
        actions: [],
        missingSnapshots: ["unknown"],
      });
      assert.equal(imgCalls.length, calls, "recovery leaves a running VM's disk alone");
    } finally {
      await driver.stop(v1, { force: true, timeout: 0 });
    }
    assert.equal(await driver.status(v1), "Stopped");
    assert.ok(await holds(disk, 0xcd));
    await snaps.restore(v1, "live");
    assert.ok(await holds(disk, 0xab));
  },
);
