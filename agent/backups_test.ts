import assert from "node:assert/strict";
import { join } from "node:path";
import { Runner } from "../drivers/runner.ts";
import { backupsOf, type Core, withCore } from "../tests/core_fixture.ts";
import type { BackupManager } from "./backups.ts";
import { NEVER } from "./snapshots.ts";

/** Each backup is refused with a 400 naming why, and no instance or upload is left. */
async function refusedWithNothingMade(
  core: Core,
  m: BackupManager,
  cases: [string, Uint8Array, RegExp][],
): Promise<void> {
  for (const [what, bytes, why] of cases) {
    await assert.rejects(
      m.import(ReadableStream.from([bytes])),
      (err: Error) => err.name === "BadRequest" && why.test(err.message),
      what,
    );
  }
  assert.deepEqual(core.store.listInstances(), []);
  assert.deepEqual([...Deno.readDirSync(core.paths.backups(""))], [], "no upload left");
}

Deno.test("pruneExpired() deletes the backups whose expiry passed, and only those", () =>
  withCore(async (core) => {
    await core.create("c1");
    const m = backupsOf(core);
    const dir = core.paths.backups("c1");
    await Deno.mkdir(dir, { recursive: true });
    for (
      const [name, expires_at] of [
        ["old", "2020-01-01T00:00:00Z"],
        ["new", "2100-01-01T00:00:00Z"],
        ["kept", NEVER],
      ]
    ) {
      await Deno.writeTextFile(
        join(dir, `${name}.json`),
        JSON.stringify({
          name,
          created_at: "2019-01-01T00:00:00Z",
          expires_at,
          instance_only: false,
        }),
      );
      await Deno.writeTextFile(join(dir, `${name}.tar.gz`), "x");
    }
    assert.deepEqual(await m.pruneExpired(new Date("2030-01-01T00:00:00Z")), ["c1/old"]);
    assert.deepEqual((await m.list("c1")).map((b) => b.name).sort(), ["kept", "new"]);
    assert.equal(await Deno.stat(join(dir, "old.tar.gz")).catch(() => undefined), undefined);
  }));

/** A backup tarball built from `make(root)` in a temp dir (gzip, with tar's `extra` options). */
async function hostileBackup(
  make: (root: string) => Promise<unknown>,
  extra: string[] = [],
  members = ["backup"],
): Promise<Uint8Array> {
  const root = await Deno.makeTempDir({ prefix: "outpost-hostile-backup-" });
  try {
    await Deno.mkdir(join(root, "backup", "container", "rootfs", "etc"), { recursive: true });
    await Deno.writeTextFile(
      join(root, "backup", "index.yaml"),
      "name: evil\nbackend: dir\npool: default\nsnapshots: []\nconfig:\n  container:\n" +
        "    name: evil\n    architecture: x86_64\n    config: {}\n    devices: {}\n" +
        "    profiles: [default]\n",
    );
    await make(root);
    const out = join(root, "out.tar.gz");
    await new Runner().run(["tar", "-czf", out, ...extra, "-C", root, ...members]);
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("a hostile backup is refused before anything is made: device nodes, fifos, foreign ids, a huge index, members outside backup/", () =>
  withCore(async (core) => {
    const m = backupsOf(core);
    const run = (argv: string[]) => new Runner().run(argv);
    const rootfs = (root: string) => join(root, "backup", "container", "rootfs");
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "device node",
        await hostileBackup((r) => run(["mknod", join(rootfs(r), "etc", "mem"), "c", "1", "1"])),
        /"backup\/container\/rootfs\/etc\/mem" is a device node or fifo/,
      ],
      [
        "fifo",
        await hostileBackup((r) => run(["mkfifo", join(rootfs(r), "etc", "pipe")])),
        /is a device node or fifo/,
      ],
      [
        "uid outside a container's range",
        await hostileBackup(async () => {}, ["--owner=70000", "--group=0"]),
        /is owned by 70000\/0, outside a container's ids/,
      ],
      [
        "gid outside a container's range",
        await hostileBackup(async () => {}, ["--owner=0", "--group=4294967294"]),
        /outside a container's ids/,
      ],
      [
        "an index over 4 MiB",
        await hostileBackup(async (r) => {
          const f = join(r, "backup", "index.yaml");
          await Deno.writeTextFile(f, `${await Deno.readTextFile(f)}#${" ".repeat(5 * 2 ** 20)}\n`);
        }),
        /index\.yaml is over 4194304 bytes/,
      ],
      [
        "a member outside backup/",
        await hostileBackup(
          async (r) => {
            await Deno.writeTextFile(join(r, "evil"), "x");
          },
          [],
          ["backup", "evil"],
        ),
        /"evil" is outside backup\//,
      ],
      [
        "a member with ..",
        await hostileBackup(async () => {}, ["--transform=s,^backup/container,backup/../x,"]),
        /is outside backup\//,
      ],
      [
        "no rootfs",
        await hostileBackup(async (r) => {
          await Deno.remove(join(r, "backup", "container"), { recursive: true });
        }),
        /has no backup\/container\/rootfs/,
      ],
      [
        "an index that is not an instance's",
        await hostileBackup(async (r) => {
          await Deno.writeTextFile(join(r, "backup", "index.yaml"), "name: [1, 2]\n");
        }),
        /Invalid backup index/,
      ],
    ];
    await refusedWithNothingMade(core, m, cases);
    assert.deepEqual(core.driver.called("restoreBackup"), []);
  }));

/** A VM backup tarball built from `make(root)` in a temp dir: the index and a 1 MiB raw disk. */
async function hostileVmBackup(
  make: (root: string) => Promise<unknown>,
  snapshots: string[] = [],
): Promise<Uint8Array> {
  const root = await Deno.makeTempDir({ prefix: "outpost-hostile-vm-backup-" });
  try {
    await Deno.mkdir(join(root, "backup", "virtual-machine"), { recursive: true });
    await Deno.writeTextFile(
      join(root, "backup", "index.yaml"),
      `name: evil\ntype: virtual-machine\nsnapshots: [${snapshots.join(", ")}]\nconfig:\n` +
        "  container:\n    architecture: x86_64\n    config: {}\n",
    );
    await Deno.writeFile(join(root, "backup", "virtual-machine.img"), new Uint8Array(2 ** 20));
    await make(root);
    const out = join(root, "out.tar.gz");
    await new Runner().run(["tar", "-czf", out, "-C", root, "backup"]);
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("a hostile VM backup is refused before anything is made: links, strays, missing disks", () =>
  withCore(async (core) => {
    const m = backupsOf(core);
    const config = (root: string) => join(root, "backup", "virtual-machine");
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "a symlink to a host file as its kernel",
        await hostileVmBackup((r) => Deno.symlink("/etc/shadow", join(config(r), "kernel"))),
        /"backup\/virtual-machine\/kernel" is a link or a special file/,
      ],
      [
        "a hard link",
        await hostileVmBackup(async (r) => {
          await Deno.writeTextFile(join(config(r), "a"), "x");
          await Deno.link(join(config(r), "a"), join(config(r), "b"));
        }),
        /is a link or a special file/,
      ],
      [
        "a fifo",
        await hostileVmBackup((r) => new Runner().run(["mkfifo", join(config(r), "pipe")])),
        /is a device node or fifo/,
      ],
      [
        "a container's rootfs in a VM backup",
        await hostileVmBackup(async (r) => {
          await Deno.mkdir(join(r, "backup", "container", "rootfs"), { recursive: true });
        }),
        /"backup\/container" has no place in a VM backup/,
      ],
      [
        "no disk",
        await hostileVmBackup((r) => Deno.remove(join(r, "backup", "virtual-machine.img"))),
        /it has no backup\/virtual-machine\.img/,
      ],
      [
        "a snapshot without its disk",
        await hostileVmBackup(async () => {}, ["s0"]),
        /snapshot "s0" has no disk/,
      ],
      [
        "a snapshot name that is not one",
        await hostileVmBackup(async () => {}, ["'../x'"]),
        /snapshot name "\.\.\/x".*contains "\/"/i,
      ],
      [
        "a type it does not know",
        await hostileVmBackup(async (r) => {
          const f = join(r, "backup", "index.yaml");
          await Deno.writeTextFile(
            f,
            (await Deno.readTextFile(f)).replace("virtual-machine", "custom"),
          );
        }),
        /type: only container and virtual-machine backups are supported/,
      ],
    ];
    await refusedWithNothingMade(core, m, cases);
    assert.deepEqual(core.vmDriver.called("restoreBackup"), []);
  }));
