import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, InvalidState } from "../../contract/errors.ts";
import type { InstanceSpec } from "../driver.ts";
import { Runner } from "../runner.ts";
import {
  backupTarArgv,
  checkVmBackupMembers,
  convertArgv,
  snapshotDisk,
  VM_BACKUP,
  writeChangesArgv,
} from "./backup.ts";
import { QemuDriver } from "./driver.ts";

const HAS_QEMU_IMG = (await new Deno.Command("sh", {
  args: ["-c", "command -v qemu-img && command -v qemu-io"],
  stdout: "null",
}).output()).success;

/** A whole VM backup's members as `tar -tv` lists them (directories with their slash). */
const LAYOUT = [
  { path: "backup/index.yaml", type: "-" },
  { path: "backup/virtual-machine/", type: "d" },
  { path: "backup/virtual-machine/boot.json", type: "-" },
  { path: "backup/virtual-machine/kernel", type: "-" },
  { path: "backup/virtual-machine.img", type: "-" },
  { path: "backup/virtual-machine-snapshots/", type: "d" },
  { path: "backup/virtual-machine-snapshots/s0/", type: "d" },
  { path: "backup/virtual-machine-snapshots/s0/OVMF_VARS.fd", type: "-" },
  { path: "backup/virtual-machine-snapshots/s0.img", type: "-" },
];

Deno.test("checkVmBackupMembers() takes Incus's VM layout with the snapshots the index names", () => {
  checkVmBackupMembers(LAYOUT, ["s0"]);
  // Incus's own config files sit in the config dir too: they are let be.
  checkVmBackupMembers(
    [...LAYOUT, { path: "backup/virtual-machine/backup.yaml", type: "-" }],
    ["s0"],
  );
  // No config dir at all: a UEFI VM with a blank variable store.
  checkVmBackupMembers([{ path: "backup/index.yaml", type: "-" }, {
    path: VM_BACKUP.disk,
    type: "-",
  }], []);
});

Deno.test("checkVmBackupMembers() refuses links, special files, strays and missing disks, naming them", () => {
  const cases: [string, { path: string; type: string }[], string[], RegExp][] = [
    [
      "a symlink",
      [...LAYOUT, { path: "backup/virtual-machine/evil", type: "l" }],
      ["s0"],
      /"backup\/virtual-machine\/evil" is a link or a special file/,
    ],
    [
      "a hard link",
      [...LAYOUT, { path: "backup/virtual-machine/initrd", type: "h" }],
      ["s0"],
      /is a link or a special file/,
    ],
    [
      "a container's rootfs",
      [...LAYOUT, { path: "backup/container/rootfs/etc/passwd", type: "-" }],
      ["s0"],
      /"backup\/container\/rootfs\/etc\/passwd" has no place in a VM backup/,
    ],
    [
      "a snapshot the index does not name",
      [...LAYOUT, { path: "backup/virtual-machine-snapshots/s9.img", type: "-" }],
      ["s0"],
      /s9\.img" has no place in a VM backup \(a snapshot the index does not name\)/,
    ],
    [
      "no disk",
      LAYOUT.filter((m) => m.path !== VM_BACKUP.disk),
      ["s0"],
      /it has no backup\/virtual-machine\.img/,
    ],
    [
      "the disk as a directory",
      [...LAYOUT.filter((m) => m.path !== VM_BACKUP.disk), { path: VM_BACKUP.disk, type: "d" }],
      ["s0"],
      /it has no backup\/virtual-machine\.img/,
    ],
    [
      "a snapshot without its disk",
      LAYOUT.filter((m) => m.path !== snapshotDisk("s0")),
      ["s0"],
      /snapshot "s0" has no disk \(backup\/virtual-machine-snapshots\/s0\.img\)/,
    ],
  ];
  for (const [what, members, snaps, why] of cases) {
    assert.throws(
      () => checkVmBackupMembers(members, snaps),
      (err: Error) => err instanceof BadRequest && why.test(err.message),
      what,
    );
  }
});

Deno.test("convertArgv() names both formats (an image from a backup is never probed) and a snapshot's tag", () => {
  assert.deepEqual(
    convertArgv({ from: "/v/disk.qcow2", fromFormat: "qcow2", to: "/s/d.img", toFormat: "raw" }),
    ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", "/v/disk.qcow2", "/s/d.img"],
  );
  assert.deepEqual(
    convertArgv({
      from: "/v/disk.qcow2",
      fromFormat: "qcow2",
      tag: "outpost-1",
      to: "/s/r.img",
      toFormat: "qcow2",
    }),
    [
      "qemu-img",
      "convert",
      "-f",
      "qcow2",
      "-l",
      "snapshot.name=outpost-1",
      "-O",
      "qcow2",
      "/v/disk.qcow2",
      "/s/r.img",
    ],
  );
});

Deno.test("writeChangesArgv() rebases an overlay of the raw image onto the disk, then commits it", () => {
  assert.deepEqual(writeChangesArgv("/t/s1.img", "/v/disk.qcow2", "/t/c.qcow2"), [
    ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/t/s1.img", "-F", "raw", "/t/c.qcow2"],
    ["qemu-img", "rebase", "-q", "-f", "qcow2", "-b", "/v/disk.qcow2", "-F", "qcow2", "/t/c.qcow2"],
    ["qemu-img", "commit", "-q", "-f", "qcow2", "-d", "/t/c.qcow2"],
  ]);
});

Deno.test("backupTarArgv() keeps sparse files sparse, owns everything by root, the index first", () => {
  const argv = backupTarArgv("/v/.backup-1", "/b/x.tar.gz", true);
  assert.ok(argv.includes("--sparse"));
  assert.ok(argv.includes("--owner=0") && argv.includes("--group=0"));
  assert.deepEqual(argv.slice(argv.indexOf("-C")), [
    "-C",
    "/v/.backup-1",
    "backup/index.yaml",
    "backup/virtual-machine",
    "backup/virtual-machine.img",
    "backup/virtual-machine-snapshots",
  ]);
  assert.equal(backupTarArgv("/s", "/o", false).at(-1), "backup/virtual-machine.img");
});

// --- with real qemu-img, on disks of a few MiB ---

function vm(name: string): InstanceSpec {
  return { name, type: "virtual-machine", architecture: "x86_64", config: {}, devices: {} };
}

async function sh(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/** Writes `byte` over 1 MiB at `offsetMiB` of a qcow2 disk. */
async function fill(disk: string, byte: number, offsetMiB = 0): Promise<void> {
  await sh("qemu-io", "-f", "qcow2", "-c", `write -P ${byte} ${offsetMiB}M 1M`, disk);
}

/** Whether 1 MiB at `offsetMiB` of the disk is all `byte`. */
async function holds(disk: string, byte: number, offsetMiB = 0): Promise<boolean> {
  const out = await new Deno.Command("qemu-io", {
    args: ["-f", "qcow2", "-c", `read -P ${byte} ${offsetMiB}M 1M`, disk],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

interface Info {
  "virtual-size": number;
  "actual-size": number;
  "backing-filename"?: string;
  snapshots?: { name: string }[];
}

async function info(disk: string): Promise<Info> {
  return JSON.parse(await sh("qemu-img", "info", "--output=json", disk));
}

interface Fixture {
  driver: QemuDriver;
  base: string;
  /** `dir(name)`: a VM's dir. */
  dir: (name: string) => string;
}

/**
 * A stopped VM "v1" as the driver makes one, booting `boot` ("uefi", or "kernel" with a kernel and
 * an initrd): a qcow2 overlay on a 4 MiB raw image.
 */
async function withVm(boot: "uefi" | "kernel", fn: (f: Fixture) => Promise<void>): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "outpost-vm-backup-" });
  const driver = new QemuDriver({
    path: join(base, "virtual-machines"),
    runner: new Runner(),
    serverConfig: () => ({}),
    probeCache: join(base, "kvm-probe.json"),
  });
  try {
    const dir = driver.dir("v1");
    await Deno.mkdir(dir, { recursive: true });
    const image = join(base, "rootfs.img");
    await sh("qemu-img", "create", "-q", "-f", "raw", image, "4M");
    const disk = join(dir, "disk.qcow2");
    await sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "raw", disk);
    if (boot === "uefi") {
      await Deno.writeTextFile(join(dir, "boot.json"), JSON.stringify({ kind: "uefi" }));
      await Deno.writeTextFile(join(dir, "OVMF_VARS.fd"), "vars-0");
    } else {
      const cmdline = "console=ttyS0 root=/dev/vda";
      await Deno.writeTextFile(join(dir, "boot.json"), JSON.stringify({ kind: "kernel", cmdline }));
      await Deno.writeTextFile(join(dir, "kernel"), "a kernel");
      await Deno.writeTextFile(join(dir, "initrd"), "an initrd");
    }
    await fn({ driver, base, dir: (name) => driver.dir(name) });
  } finally {
    driver.close();
    await Deno.remove(base, { recursive: true });
  }
}

function qemuTest(name: string, boot: "uefi" | "kernel", fn: (f: Fixture) => Promise<void>) {
  Deno.test({ name, ignore: !HAS_QEMU_IMG, fn: () => withVm(boot, fn) });
}

qemuTest(
  "a VM's backup restores as a standalone disk with its data, size, snapshots and UEFI variables",
  "uefi",
  async ({ driver, base, dir }) => {
    const v1 = vm("v1");
    const disk = join(dir("v1"), "disk.qcow2");
    await fill(disk, 0x11);
    await driver.snapshots.create(v1, "s0");
    await Deno.writeTextFile(join(dir("v1"), "OVMF_VARS.fd"), "vars-1");
    await fill(disk, 0x22);
    await driver.snapshots.create(v1, "s1");
    // Grown after the snapshots (qemu-img reads a snapshot at the disk's size now).
    await sh("qemu-img", "resize", "-q", "-f", "qcow2", disk, "8M");
    await fill(disk, 0x33, 6);
    await Deno.writeTextFile(join(dir("v1"), "OVMF_VARS.fd"), "vars-2");

    const out = join(base, "v1.tar.gz");
    await driver.backup(v1, { snapshots: ["s0", "s1"], index: { name: "v1" }, out });
    const listing = (await sh("tar", "-tzf", out)).split("\n").filter(Boolean);
    for (
      const m of [
        "backup/index.yaml",
        "backup/virtual-machine/boot.json",
        "backup/virtual-machine/OVMF_VARS.fd",
        "backup/virtual-machine.img",
        "backup/virtual-machine-snapshots/s0.img",
        "backup/virtual-machine-snapshots/s0/OVMF_VARS.fd",
        "backup/virtual-machine-snapshots/s1.img",
      ]
    ) assert.ok(listing.includes(m), `${m} in ${listing.join(", ")}`);
    // Sparse: three disks of 4-8 MiB holding 3 MiB of data (of one byte each) take a few KiB.
    assert.ok((await Deno.stat(out)).size < 64 * 1024, `${(await Deno.stat(out)).size} bytes`);
    assert.deepEqual(readdirSync(dir("v1")).filter((e) => e.startsWith(".")), [], "no stage left");

    const v2 = vm("v2");
    await driver.restoreBackup(v2, { file: out, snapshots: ["s0", "s1"] });
    const restored = join(dir("v2"), "disk.qcow2");
    const now = await info(restored);
    assert.equal(now["backing-filename"], undefined, "standalone");
    assert.equal(now["virtual-size"], 8 * 2 ** 20);
    assert.equal(now.snapshots?.length, 2);
    assert.equal(await sh("qemu-img", "compare", "-q", disk, restored), "");
    assert.ok(await holds(restored, 0x33, 6));
    assert.equal(await Deno.readTextFile(join(dir("v2"), "OVMF_VARS.fd")), "vars-2");
    // Later states share what they did not change with the snapshots before them.
    assert.ok(now["actual-size"] < 4 * 2 ** 20, `${now["actual-size"]} bytes on disk`);
    assert.deepEqual(readdirSync(dir("v2")).filter((e) => e.startsWith(".")), []);

    await driver.snapshots.restore(v2, "s0");
    assert.ok(await holds(restored, 0x11));
    assert.equal(await Deno.readTextFile(join(dir("v2"), "OVMF_VARS.fd")), "vars-0");
    await driver.snapshots.restore(v2, "s1");
    assert.ok(await holds(restored, 0x22));
    assert.equal(await Deno.readTextFile(join(dir("v2"), "OVMF_VARS.fd")), "vars-1");

    // A backup whose snapshot's disk is smaller than the current one (as another server may
    // write it): each state keeps its own size.
    await rewrite(out, (root) => Deno.truncate(join(root, snapshotDisk("s0")), 4 * 2 ** 20));
    const v3 = vm("v3");
    await driver.restoreBackup(v3, { file: out, snapshots: ["s0", "s1"] });
    const smaller = join(dir("v3"), "disk.qcow2");
    assert.equal((await info(smaller))["virtual-size"], 8 * 2 ** 20);
    assert.equal(await sh("qemu-img", "compare", "-q", disk, smaller), "");
    await driver.snapshots.restore(v3, "s0");
    assert.equal((await info(smaller))["virtual-size"], 4 * 2 ** 20);
    assert.ok(await holds(smaller, 0x11));

    // A second restore under a taken name makes nothing.
    await assert.rejects(
      driver.restoreBackup(v2, { file: out, snapshots: [] }),
      (err: Error) => err instanceof InvalidState && /already exists/.test(err.message),
    );
  },
);

qemuTest(
  "a kernel-booted VM's backup carries its kernel, initrd and command line",
  "kernel",
  async ({ driver, base, dir }) => {
    const out = join(base, "v1.tar.gz");
    await fill(join(dir("v1"), "disk.qcow2"), 0x44);
    await driver.backup(vm("v1"), { snapshots: [], index: {}, out });
    await driver.restoreBackup(vm("v2"), { file: out, snapshots: [] });
    assert.equal(await Deno.readTextFile(join(dir("v2"), "kernel")), "a kernel");
    assert.equal(await Deno.readTextFile(join(dir("v2"), "initrd")), "an initrd");
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(dir("v2"), "boot.json"))), {
      kind: "kernel",
      cmdline: "console=ttyS0 root=/dev/vda",
    });
    assert.equal(existsSync(join(dir("v2"), "OVMF_VARS.fd")), false);
    assert.ok(await holds(join(dir("v2"), "disk.qcow2"), 0x44));
  },
);

/** Rewrites the backup `file` after `edit` changed its unpacked tree. */
async function rewrite(file: string, edit: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "outpost-vm-backup-edit-" });
  try {
    await sh("tar", "-xzf", file, "-C", root);
    await edit(root);
    await sh("tar", "--sparse", "-czf", file, "-C", root, "backup");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

qemuTest(
  "a restore refuses a bad boot.json, a missing kernel or a disk of odd size and leaves nothing",
  "kernel",
  async ({ driver, base, dir }) => {
    const good = join(base, "good.tar.gz");
    await driver.backup(vm("v1"), { snapshots: [], index: {}, out: good });
    const config = (root: string) => join(root, VM_BACKUP.config);
    const cases: [string, (root: string) => Promise<void>, RegExp][] = [
      [
        "boot.json not JSON",
        (r) => Deno.writeTextFile(join(config(r), "boot.json"), "{"),
        /boot\.json is not JSON/,
      ],
      [
        "boot.json with an unknown kind",
        (r) => Deno.writeTextFile(join(config(r), "boot.json"), '{"kind":"bios"}'),
        /boot\.json: kind: /,
      ],
      [
        "boot.json with an unknown key",
        (r) => Deno.writeTextFile(join(config(r), "boot.json"), '{"kind":"uefi","code":"/x"}'),
        /boot\.json: : Unrecognized key/,
      ],
      [
        "no kernel for a kernel boot",
        (r) => Deno.remove(join(config(r), "kernel")),
        /boots a kernel, but backup\/virtual-machine\/kernel is missing/,
      ],
      [
        "a disk of 1000 bytes",
        (r) => Deno.truncate(join(r, VM_BACKUP.disk), 1000),
        /virtual-machine\.img is 1000 bytes, not a whole number of 512-byte sectors/,
      ],
    ];
    for (const [what, edit, why] of cases) {
      const file = join(base, "bad.tar.gz");
      await Deno.copyFile(good, file);
      await rewrite(file, edit);
      await assert.rejects(
        driver.restoreBackup(vm("v2"), { file, snapshots: [] }),
        (err: Error) => err instanceof BadRequest && why.test(err.message),
        what,
      );
      assert.equal(existsSync(dir("v2")), false, `${what}: nothing left`);
    }
  },
);

qemuTest(
  "publish() makes an image of the disk or a snapshot: a standalone qcow2 and the boot files",
  "kernel",
  async ({ driver, base, dir }) => {
    const v1 = vm("v1");
    const disk = join(dir("v1"), "disk.qcow2");
    await fill(disk, 0x55);
    await driver.snapshots.create(v1, "s0");
    await fill(disk, 0x66);
    for (const [from, byte] of [[undefined, 0x66], ["s0", 0x55]] as const) {
      const out = join(base, "image.tar.gz");
      const unpacked = join(base, "image");
      await Deno.mkdir(unpacked);
      await driver.publish(v1, { from, metadata: { architecture: "x86_64" }, out });
      await sh("tar", "-xzf", out, "-C", unpacked);
      assert.deepEqual(readdirSync(unpacked).sort(), ["boot", "metadata.yaml", "rootfs.img"]);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(join(unpacked, "metadata.yaml"))), {
        architecture: "x86_64",
        boot: {
          kernel: "boot/kernel",
          initrd: "boot/initrd",
          cmdline: "console=ttyS0 root=/dev/vda",
        },
      });
      assert.equal(await Deno.readTextFile(join(unpacked, "boot", "kernel")), "a kernel");
      const rootfs = join(unpacked, "rootfs.img");
      assert.equal((await info(rootfs))["backing-filename"], undefined);
      assert.equal((await info(rootfs)).snapshots, undefined);
      assert.ok(await holds(rootfs, byte), `${from ?? "the disk"} holds its own data`);
      await Deno.remove(unpacked, { recursive: true });
    }
    assert.deepEqual(readdirSync(dir("v1")).filter((e) => e.startsWith(".")), []);
  },
);

qemuTest(
  "recover() removes the work dirs a killed backup or publish left, and nothing else",
  "uefi",
  async ({ driver, dir }) => {
    const left = [`.backup-${crypto.randomUUID()}`, `.publish-${crypto.randomUUID()}`];
    for (const d of left) await Deno.mkdir(join(dir("v1"), d, "backup"), { recursive: true });
    await Deno.writeTextFile(join(dir("v1"), ".backup-notes"), "kept");
    const report = await driver.recover(vm("v1"), []);
    for (const d of left) assert.ok(report.actions.includes(`removed ${d}`), d);
    assert.deepEqual(readdirSync(dir("v1")).filter((e) => e.startsWith(".")), [".backup-notes"]);
    assert.ok(existsSync(join(dir("v1"), "disk.qcow2")));
  },
);
