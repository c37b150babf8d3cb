/**
 * Virtual machines end to end under TCG (forced: nested KVM guests hang on these machines): the
 * test VM image, launch, guest agent exec and files, pause/resume, a daemon restart that finds
 * the VM still running, a live snapshot restored, a clean ACPI stop, export/import and publish of
 * the stopped VM (booted again as copies), delete, and nothing left behind. One VM, booted by the
 * first test that needs it, serves them all.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { HAS_QEMU, sharedDaemon, TestDaemon, typeInto, uniqueName } from "./helpers.ts";

interface Listed {
  name: string;
  type: string;
  status: string;
  state: { pid: number; memory: { usage: number }; cpu: { usage: number } };
  config: Record<string, string>;
}

/** Whether a process runs: a zombie (exited, not yet reaped by this sandbox's PID 1) does not. */
async function processAlive(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Runs a host command and returns its stdout; fails with its stderr. */
async function sh(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

async function waitForAgent(d: TestDaemon, name: string): Promise<number> {
  const started = performance.now();
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const r = await d.cli("exec", name, "--", "true");
    if (r.code === 0) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`The guest agent of ${name} never answered:\n${await d.log()}`);
}

/** The daemon the VM tests share: TCG forced, the VM image imported as "vm". */
const daemon = sharedDaemon(async (d) => {
  await d.ok("config", "set", "core.vm_accel=tcg");
  await d.importVmImage("vm");
});
/** The VM they share (one boot under TCG takes tens of seconds), and how it is launched. */
const NAME = uniqueName("v");
const LAUNCH = ["--vm", "-c", "limits.cpu=1", "-c", "limits.memory=256MiB"];
const vmDir = (d: TestDaemon) => join(d.dir, "virtual-machines", NAME);

/** The shared daemon, with the shared VM running and its guest agent answering. */
async function running(): Promise<TestDaemon> {
  const d = await daemon();
  if (await d.ensureRunning(NAME, "vm", ...LAUNCH)) {
    const readyMs = await waitForAgent(d, NAME);
    console.log(`guest agent ready ${readyMs.toFixed(0)} ms after launch or start returned`);
  }
  return d;
}

/** The shared VM as `outpost list --format json` shows it. */
async function listed(d: TestDaemon): Promise<Listed> {
  const all = JSON.parse(await d.ok("list", "--format", "json")) as Listed[];
  const vm = all.find((i) => i.name === NAME);
  assert.ok(vm, `${NAME} is not listed`);
  return vm;
}

/** A VM test: skipped without QEMU. */
function vmTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !HAS_QEMU, fn });
}

vmTest(
  "a VM is listed as a running virtual-machine, with the accelerator it runs under",
  async () => {
    const vm = await listed(await running());
    assert.equal(vm.type, "virtual-machine");
    assert.equal(vm.status, "Running");
    assert.equal(vm.config["volatile.vm.accel"], "tcg");
    assert.ok(vm.state.pid > 0);
  },
);

vmTest(
  "a VM's QEMU process is named after it and runs with the accelerator and memory asked for",
  async () => {
    const { pid } = (await listed(await running())).state;
    // `ps` shows which VM is which.
    assert.equal(
      (await Deno.readTextFile(`/proc/${pid}/comm`)).trim(),
      `outpost-${NAME}`.slice(0, 15),
    );
    const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
    assert.equal(argv[argv.indexOf("-accel") + 1], "tcg");
    assert.equal(argv[argv.indexOf("-m") + 1], "256M");
  },
);

vmTest(
  "GET /1.0/metrics shows a running VM's CPU time and memory as its QEMU process has them",
  async () => {
    const d = await running();
    const text = await (await d.api.fetch("GET", "/1.0/metrics")).text();
    const label = `name="${NAME}",project="default",type="virtual-machine"`;
    const value = (metric: string) => {
      const line = text.split("\n").find((l) => l.startsWith(metric) && l.includes(label));
      assert.ok(line, `${metric} for ${NAME} in:\n${text}`);
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    };
    assert.ok(value('incus_cpu_seconds_total{cpu="0",mode="user"') > 0);
    assert.equal(value("incus_memory_MemTotal_bytes"), 256 * 2 ** 20);
    assert.ok(value("incus_memory_RSS_bytes") > 16 * 2 ** 20);
    assert.equal(value("incus_cpu_effective_total"), 1);
  },
);

vmTest("exec in a VM runs the command through the guest agent", async () => {
  const uname = await (await running()).cli("exec", NAME, "--", "uname", "-r");
  assert.equal(uname.code, 0);
  assert.match(uname.stdout, /^\d+\.\d+\.\d+.*amd64\n$/);
});

vmTest(
  "exec in a VM passes the command's stdout and stderr through apart, even when it fails",
  async () => {
    const r = await (await running()).cli(
      "exec",
      NAME,
      "--",
      "sh",
      "-c",
      "echo out; echo err >&2; exit 3",
    );
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");
  },
);

vmTest("exec in a VM exits with the command's exit code", async () => {
  const d = await running();
  assert.equal((await d.cli("exec", NAME, "--", "sh", "-c", "exit 3")).code, 3);
});

vmTest("interactive exec in a VM is refused, saying it is not supported", async () => {
  const tty = await (await running()).cli("exec", "-t", NAME, "--", "sh");
  assert.equal(tty.code, 1);
  assert.match(tty.stderr, /Interactive exec in a VM is not supported/);
});

vmTest("file push and pull carry a file into and out of a VM byte for byte", async () => {
  const d = await running();
  const tmp = await Deno.makeTempDir();
  try {
    const data = new Uint8Array(300_000).map((_, i) => (i * 31) % 256);
    await Deno.writeFile(join(tmp, "in.bin"), data);
    await d.ok("file", "push", join(tmp, "in.bin"), `${NAME}/root/in.bin`);
    assert.equal(
      (await d.ok("exec", NAME, "--", "wc", "-c", "/root/in.bin")).trim().split(/\s+/)[0],
      "300000",
    );
    await d.ok("file", "pull", `${NAME}/root/in.bin`, join(tmp, "out.bin"));
    assert.deepEqual(await Deno.readFile(join(tmp, "out.bin")), data);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

vmTest("pause freezes a VM through QMP and resume lets it run again", async () => {
  const d = await running();
  await d.ok("pause", NAME);
  assert.equal((await listed(d)).status, "Frozen");
  await d.ok("resume", NAME);
  assert.equal((await d.ok("exec", NAME, "--", "echo", "back")).trim(), "back");
});

vmTest(
  "a kill -9 of the daemon leaves the VM running, and a new daemon reattaches over QMP",
  async () => {
    const d = await running();
    const { pid } = (await listed(d)).state;
    await d.kill9();
    assert.ok(await processAlive(pid));
    await d.spawn();
    const again = await listed(d);
    assert.equal(again.status, "Running");
    assert.equal(again.state.pid, pid);
    assert.ok(again.state.memory.usage > 0);
    assert.equal((await d.ok("exec", NAME, "--", "echo", "reattached")).trim(), "reattached");
  },
);

vmTest("console --show-log prints the VM's serial output from its boot", async () => {
  assert.match(await (await running()).ok("console", NAME, "--show-log"), /OUTPOST-VM-READY/);
});

vmTest("the VM's serial console takes a login, and ctrl+a q detaches from it", async () => {
  const d = await running();
  const session = await typeInto(
    `${d.cliCommandLine} console ${NAME}`,
    "\rroot\recho VMCON-$((6*7))\rexit\r\x01q",
    { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    1500,
    1500,
  );
  assert.equal(session.code, 0, session.stderr);
  assert.match(session.stdout, /VMCON-42/);
});

vmTest("restart powers the VM off and boots a new QEMU whose guest agent answers", async () => {
  const d = await running();
  const { pid } = (await listed(d)).state;
  await d.ok("restart", NAME, "--timeout", "30");
  const restarted = await listed(d);
  assert.equal(restarted.status, "Running");
  assert.notEqual(restarted.state.pid, pid);
  assert.equal(await processAlive(pid), false);
  await waitForAgent(d, NAME);
});

vmTest(
  "a snapshot of a running VM, restored after a change, brings the guest's file back",
  async () => {
    const d = await running();
    const guest = (script: string) => d.ok("exec", NAME, "--", "sh", "-c", script);
    const disk = join(vmDir(d), "disk.qcow2");
    /** The internal snapshots qemu-img lists (-U: QEMU may hold the disk). */
    const listedTags = () => sh("qemu-img", "snapshot", "-l", "-U", disk);
    await guest("echo one > /root/f; sync");
    await d.ok("snapshot", "create", NAME, "s1");
    // Taken live: the VM runs on, its filesystems thawed (a write would hang otherwise).
    assert.equal((await listed(d)).status, "Running");
    await guest("echo two > /root/f; sync");
    assert.equal(await guest("cat /root/f"), "two\n");
    const [{ tag }] = JSON.parse(await Deno.readTextFile(join(vmDir(d), "snapshots.json")));
    assert.match(await listedTags(), new RegExp(tag));

    await d.ok("stop", NAME, "--force");
    await d.ok("snapshot", "restore", NAME, "s1");
    assert.equal((await listed(d)).status, "Stopped");
    await d.ok("start", NAME);
    await waitForAgent(d, NAME);
    assert.equal(await guest("cat /root/f"), "one\n");
    assert.doesNotMatch(await d.log(), /guest filesystems (not frozen|may still be frozen)/);

    // Deleted while the VM runs (through QMP): gone from the disk.
    await d.ok("snapshot", "delete", NAME, "s1");
    assert.doesNotMatch(await listedTags(), new RegExp(tag));
    assert.equal(JSON.parse(await d.ok("snapshot", "list", NAME, "--format", "json")).length, 0);
  },
);

vmTest(
  "a running VM is copied live (without its snapshots), and the copy boots with its files",
  async () => {
    const d = await running();
    const copy = uniqueName("vc");
    const guest = (name: string, script: string) => d.ok("exec", name, "--", "sh", "-c", script);
    try {
      await guest(NAME, "echo live-copy > /root/copied; sync");
      const withSnaps = await d.cli("snapshot", "create", NAME, "cs0");
      assert.equal(withSnaps.code, 0, withSnaps.stderr);
      const refused = await d.cli("copy", NAME, copy);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /is running: copy it without its snapshots/);
      await d.ok("copy", NAME, copy, "--instance-only");
      assert.equal((await listed(d)).status, "Running", "the source runs on");
      // No temporary snapshot is left in the source's disk; the copy is an overlay on the image.
      const tags = await sh("qemu-img", "snapshot", "-l", "-U", join(vmDir(d), "disk.qcow2"));
      assert.equal(tags.split("outpost-").length - 1, 1, tags);
      const info = await sh(
        "qemu-img",
        "info",
        join(d.dir, "virtual-machines", copy, "disk.qcow2"),
      );
      assert.match(info, /backing file: /);
      await d.ok("start", copy);
      await waitForAgent(d, copy);
      assert.equal(await guest(copy, "cat /root/copied"), "live-copy\n");
    } finally {
      await d.cli("delete", copy, "--force");
      await d.cli("snapshot", "delete", NAME, "cs0");
    }
  },
);

vmTest("a block volume attached to a VM is an extra virtio disk named by its device", async () => {
  const d = await running();
  const guest = (script: string) => d.ok("exec", NAME, "--", "sh", "-c", script);
  await d.ok("storage", "volume", "create", "default", "vdata", "--type", "block", "size=64MiB");
  const file = join(d.dir, "custom-volumes", "vdata", "root.qcow2");
  assert.match(await sh("qemu-img", "info", file), /virtual size: 64 MiB/);
  const running1 = await d.cli("storage", "volume", "attach", "default", "vdata", NAME);
  assert.equal(running1.code, 1, "devices change only while stopped");
  await d.ok("stop", NAME, "--force");
  await d.ok("storage", "volume", "attach", "default", "vdata", NAME, "data");
  await d.ok("start", NAME);
  await waitForAgent(d, NAME);
  // The disk whose serial is the device's name; written through and read back.
  const dev = (await guest(
    'for b in /sys/block/vd*; do [ "$(cat $b/serial)" = data ] && ' +
      "basename $b; done",
  )).trim();
  assert.match(dev, /^vd[b-z]$/);
  assert.equal((await guest(`cat /sys/block/${dev}/size`)).trim(), String(64 * 2048));
  await guest(`echo volume-data | dd of=/dev/${dev} bs=512 count=1 conv=sync 2>/dev/null; sync`);
  assert.match(await guest(`head -c 11 /dev/${dev}`), /^volume-data/);
  const inUse = await d.cli("storage", "volume", "delete", "default", "vdata");
  assert.match(inUse.stderr, /in use by/);
});

/** What the backup tests find in the guest: a file written before a snapshot, one after it. */
const GUEST_FILE = "/root/backup.bin";
const LATER_FILE = "/root/after";
let guestSum = "";

async function guestSha256(d: TestDaemon, name: string): Promise<string> {
  return (await d.ok("exec", name, "--", "sha256sum", GUEST_FILE)).split(" ")[0];
}

vmTest(
  "a running VM is neither exported nor published (stop it first), and nothing is made",
  async () => {
    const d = await running();
    // The guest's files the backup tests below look for once the VM is stopped.
    const guest = (script: string) => d.ok("exec", NAME, "--", "sh", "-c", script);
    await guest(`head -c 300000 /dev/urandom > ${GUEST_FILE}; sync`);
    guestSum = await guestSha256(d, NAME);
    await d.ok("snapshot", "create", NAME, "b0");
    await guest(`echo later > ${LATER_FILE}; sync`);

    const tmp = await Deno.makeTempDir({ prefix: "outpost-vm-backup-" });
    try {
      const exported = await d.cli("export", NAME, join(tmp, "b.tar.gz"));
      assert.equal(exported.code, 1);
      assert.match(exported.stderr, /is running: stop it before backing it up/);
      assert.equal(existsSync(join(tmp, "b.tar.gz")), false);
      assert.deepEqual(await d.api.get<string[]>(`/1.0/instances/${NAME}/backups`), []);
      for (const source of [NAME, `${NAME}/b0`]) {
        const published = await d.cli("publish", source, "--alias", uniqueName("vi"));
        assert.equal(published.code, 1, source);
        assert.match(published.stderr, /is running: stop it first \(a VM is published stopped/);
      }
      assert.equal((await d.api.get<string[]>("/1.0/images")).length, 1, "only the VM image");
      assert.equal((await listed(d)).status, "Running");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

vmTest(
  "stop powers the VM off through ACPI: QEMU exits and leaves no sockets or pid file",
  async () => {
    const d = await running();
    const { pid } = (await listed(d)).state;
    await d.ok("stop", NAME, "--timeout", "30");
    assert.equal(
      await processAlive(pid),
      false,
      `QEMU still runs: ${await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "")}\n${await d
        .log()}`,
    );
    for (const f of ["qmp.sock", "qga.sock", "console.sock", "qemu.pid"]) {
      assert.equal(existsSync(join(vmDir(d), f)), false, `${f} left behind`);
    }
  },
);

vmTest(
  "a stopped VM exported and imported boots with its files and snapshot; published, it launches",
  async () => {
    assert.ok(guestSum, "the guest's file was written by the test before");
    const d = await daemon();
    await d.ensureStopped(NAME, "vm", ...LAUNCH);
    const [copy, fromImage, alias] = [uniqueName("vb"), uniqueName("vp"), uniqueName("vimg")];
    const tmp = await Deno.makeTempDir({ prefix: "outpost-vm-backup-" });
    const file = join(tmp, "b.tar.gz");
    try {
      const started = performance.now();
      await d.ok("export", NAME, file);
      const { size } = await Deno.stat(file);
      console.log(
        `VM backup: ${(size / 2 ** 20).toFixed(1)} MiB, exported in ${
          (performance.now() - started).toFixed(0)
        } ms`,
      );
      const index = JSON.parse(await sh("tar", "-xzOf", file, "backup/index.yaml"));
      assert.equal(index.type, "virtual-machine");
      assert.deepEqual(index.snapshots, ["b0"]);
      const members = (await sh("tar", "-tzf", file)).split("\n");
      for (
        const m of [
          "backup/virtual-machine.img",
          "backup/virtual-machine/boot.json",
          "backup/virtual-machine/kernel",
          "backup/virtual-machine-snapshots/b0.img",
        ]
      ) assert.ok(members.includes(m), m);

      // Truncated: refused, nothing made.
      const bytes = await Deno.readFile(file);
      await Deno.writeFile(join(tmp, "cut.tar.gz"), bytes.subarray(0, bytes.length >> 1));
      const cut = await d.cli("import", join(tmp, "cut.tar.gz"), copy);
      assert.equal(cut.code, 1);
      assert.match(cut.stderr, /corrupt or truncated/);
      assert.equal(await d.status(copy), undefined);
      assert.equal(existsSync(join(d.dir, "virtual-machines", copy)), false);

      const importedAt = performance.now();
      await d.ok("import", file, copy);
      console.log(`VM backup imported in ${(performance.now() - importedAt).toFixed(0)} ms`);
      // A standalone disk, byte for byte the source's.
      const disk = join(d.dir, "virtual-machines", copy, "disk.qcow2");
      assert.doesNotMatch(await sh("qemu-img", "info", disk), /backing file/);
      assert.equal(await sh("qemu-img", "compare", "-q", join(vmDir(d), "disk.qcow2"), disk), "");
      // Its snapshot restores: the state before the later file.
      await d.ok("snapshot", "restore", copy, "b0");

      await d.ok("publish", NAME, "--alias", alias);
      await Promise.all([d.ok("start", copy), d.ok("launch", alias, fromImage, ...LAUNCH)]);
      await Promise.all([waitForAgent(d, copy), waitForAgent(d, fromImage)]);
      assert.equal(await guestSha256(d, copy), guestSum);
      assert.equal((await d.cli("exec", copy, "--", "test", "-e", LATER_FILE)).code, 1);
      assert.equal(await guestSha256(d, fromImage), guestSum);
      assert.equal(await d.ok("exec", fromImage, "--", "cat", LATER_FILE), "later\n");
    } finally {
      await d.cli("delete", copy, fromImage, "--force");
      await d.cli("image", "delete", alias);
      await Deno.remove(tmp, { recursive: true });
    }
    assert.equal(existsSync(join(d.dir, "virtual-machines", copy)), false);
  },
);

vmTest("delete removes a stopped VM and its directory", async () => {
  const d = await daemon();
  await d.ensureStopped(NAME, "vm", ...LAUNCH);
  await d.ok("delete", NAME);
  assert.equal(existsSync(vmDir(d)), false);
  assert.deepEqual(JSON.parse(await d.ok("list", "--format", "json")), []);
  // A volume outlives the VM it was attached to; unused now, it can go.
  await d.cli("storage", "volume", "delete", "default", "vdata");
  assert.equal(existsSync(join(d.dir, "custom-volumes", "vdata")), false);
});

vmTest(
  "a VM on another pool keeps its disk there, reached through a link in its own path",
  async () => {
    const d = await daemon();
    const name = uniqueName("vp");
    const pool = uniqueName("vmpool");
    try {
      await d.ok("storage", "create", pool, "dir");
      await d.ok("init", "vm", name, "--vm", "-s", pool);
      const onPool = join(d.dir, "storage-pools", pool, "virtual-machines", name);
      assert.equal(await Deno.realPath(join(d.dir, "virtual-machines", name)), onPool);
      assert.ok(existsSync(join(onPool, "disk.qcow2")));
      await d.ok("snapshot", "create", name, "s0");
      await d.ok("move", name, `${name}b`);
      assert.equal(
        await Deno.realPath(join(d.dir, "virtual-machines", `${name}b`)),
        join(d.dir, "storage-pools", pool, "virtual-machines", `${name}b`),
      );
      await d.ok("delete", `${name}b`);
      assert.equal(
        existsSync(join(d.dir, "storage-pools", pool, "virtual-machines", `${name}b`)),
        false,
      );
      await d.ok("storage", "delete", pool);
    } finally {
      await d.cli("delete", name, `${name}b`, "--force");
      await d.cli("storage", "delete", pool);
    }
  },
);

Deno.test({
  name: "core.vm_accel=kvm on a host without a usable KVM refuses to start a VM, naming the reason",
  ignore: !HAS_QEMU,
  async fn() {
    const d = await TestDaemon.start();
    try {
      const resources = JSON.parse(
        JSON.stringify(
          await d.api.get<
            { environment: { instance_drivers: Record<string, Record<string, string>> } }
          >("/1.0"),
        ),
      );
      const qemu = resources.environment.instance_drivers.qemu;
      assert.equal(qemu.available, true);
      // Wait for the probe (it runs in the background at start-up).
      let kvm = qemu.kvm;
      for (let i = 0; i < 100 && kvm === "probing"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        kvm = (await d.api.get<
          { environment: { instance_drivers: Record<string, Record<string, string>> } }
        >("/1.0"))
          .environment.instance_drivers.qemu.kvm;
      }
      assert.notEqual(kvm, "probing");
      if (kvm === "usable") return; // a host with working KVM: nothing to refuse
      await d.ok("config", "set", "core.vm_accel=kvm");
      await d.importVmImage("vm");
      const r = await d.cli("launch", "vm", uniqueName("k"), "--vm");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /KVM/);
      // Nothing is left running.
      const list = JSON.parse(await d.ok("list", "--format", "json")) as Listed[];
      assert.ok(list.every((i) => i.status !== "Running"));
      const bad = await d.cli("config", "set", "core.vm_accel=fast");
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /expected auto, kvm or tcg/);
    } finally {
      await d.cleanup();
    }
  },
});
