/**
 * Virtual machines end to end under TCG (forced: nested KVM guests hang on these machines): the
 * test VM image, launch, guest agent exec and files, pause/resume, a daemon restart that finds
 * the VM still running, a clean ACPI stop, delete, and nothing left behind.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { HAS_QEMU, TestDaemon, typeInto, uniqueName } from "./helpers.ts";

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

Deno.test({
  name:
    "a VM's whole life under TCG: launch, guest-agent exec and files, pause, daemon restart, stop, delete",
  ignore: !HAS_QEMU,
  async fn() {
    const d = await TestDaemon.start();
    try {
      await d.ok("config", "set", "core.vm_accel=tcg");
      await d.importVmImage("vm");
      const name = uniqueName("v");
      await d.ok("launch", "vm", name, "--vm", "-c", "limits.cpu=1", "-c", "limits.memory=256MiB");

      const [vm] = JSON.parse(await d.ok("list", "--format", "json")) as Listed[];
      assert.equal(vm.type, "virtual-machine");
      assert.equal(vm.status, "Running");
      assert.equal(vm.config["volatile.vm.accel"], "tcg");
      let pid = vm.state.pid;
      assert.ok(pid > 0);
      // `ps` shows which VM is which.
      const comm = (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
      assert.equal(comm, `outpost-${name}`.slice(0, 15));
      const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
      assert.equal(argv[argv.indexOf("-accel") + 1], "tcg");
      assert.equal(argv[argv.indexOf("-m") + 1], "256M");

      const readyMs = await waitForAgent(d, name);
      console.log(`guest agent ready ${readyMs.toFixed(0)} ms after launch returned`);

      // Exec through the guest agent: output, stderr, exit code, stdin.
      const uname = await d.cli("exec", name, "--", "uname", "-r");
      assert.equal(uname.code, 0);
      assert.match(uname.stdout, /^\d+\.\d+\.\d+.*amd64\n$/);
      const three = await d.cli("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3");
      assert.equal(three.code, 3);
      assert.equal(three.stdout, "out\n");
      assert.equal(three.stderr, "err\n");
      const tty = await d.cli("exec", "-t", name, "--", "sh");
      assert.equal(tty.code, 1);
      assert.match(tty.stderr, /Interactive exec in a VM is not supported/);

      // Files through guest-file-*.
      const tmp = await Deno.makeTempDir();
      try {
        const data = new Uint8Array(300_000).map((_, i) => (i * 31) % 256);
        await Deno.writeFile(join(tmp, "in.bin"), data);
        await d.ok("file", "push", join(tmp, "in.bin"), `${name}/root/in.bin`);
        assert.equal(
          (await d.ok("exec", name, "--", "wc", "-c", "/root/in.bin")).trim().split(/\s+/)[0],
          "300000",
        );
        await d.ok("file", "pull", `${name}/root/in.bin`, join(tmp, "out.bin"));
        assert.deepEqual(await Deno.readFile(join(tmp, "out.bin")), data);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }

      // Pause and resume through QMP.
      await d.ok("pause", name);
      assert.equal(
        (JSON.parse(await d.ok("list", "--format", "json")) as Listed[])[0].status,
        "Frozen",
      );
      await d.ok("resume", name);
      assert.equal((await d.ok("exec", name, "--", "echo", "back")).trim(), "back");

      // The daemon dies; the VM does not, and a new daemon reattaches over QMP.
      await d.kill9();
      assert.ok(await processAlive(pid));
      await d.spawn();
      const [again] = JSON.parse(await d.ok("list", "--format", "json")) as Listed[];
      assert.equal(again.status, "Running");
      assert.equal(again.state.pid, pid);
      assert.ok(again.state.memory.usage > 0);
      assert.equal((await d.ok("exec", name, "--", "echo", "reattached")).trim(), "reattached");

      // The serial console log has the boot; the console itself takes a login (ctrl+a q detaches).
      assert.match(await d.ok("console", name, "--show-log"), /OUTPOST-VM-READY/);
      const session = await typeInto(
        `${d.cliCommandLine} console ${name}`,
        "\rroot\recho VMCON-$((6*7))\rexit\r\x01q",
        { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
        1500,
        1500,
      );
      assert.equal(session.code, 0, session.stderr);
      assert.match(session.stdout, /VMCON-42/);

      // Restart: a clean power-off, then a new QEMU process whose guest agent answers again.
      await d.ok("restart", name, "--timeout", "30");
      const [restarted] = JSON.parse(await d.ok("list", "--format", "json")) as Listed[];
      assert.equal(restarted.status, "Running");
      assert.notEqual(restarted.state.pid, pid);
      assert.equal(await processAlive(pid), false);
      await waitForAgent(d, name);
      pid = restarted.state.pid;

      // A clean stop: ACPI power button, the guest powers off, QEMU exits.
      await d.ok("stop", name, "--timeout", "30");
      assert.equal(
        await processAlive(pid),
        false,
        `QEMU still runs: ${await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "")}\n${await d
          .log()}`,
      );
      const vmDir = join(d.dir, "virtual-machines", name);
      for (const f of ["qmp.sock", "qga.sock", "console.sock", "qemu.pid"]) {
        assert.equal(existsSync(join(vmDir, f)), false, `${f} left behind`);
      }

      await d.ok("delete", name);
      assert.equal(existsSync(vmDir), false);
      assert.deepEqual(JSON.parse(await d.ok("list", "--format", "json")), []);
    } finally {
      await d.cleanup();
    }
  },
});

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
