import assert from "node:assert/strict";
import { join } from "node:path";
import { optValue, qemuArgs, vmPaths, type VmSpec } from "./args.ts";
import { QmpClient } from "./qmp.ts";

const base: VmSpec = {
  name: "web1",
  uuid: "6f0e1a52-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
  dir: "/run/outpost/vms/web1",
  accel: "tcg",
  cpus: 2,
  memoryMiB: 512,
  disk: "/var/lib/outpost/vms/web1/root.qcow2",
  boot: { kind: "kernel", kernel: "/img/vmlinux", initrd: "/img/initrd", cmdline: "console=ttyS0" },
};

/** The values following each occurrence of `flag`. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]] : []));
}

Deno.test("qemuArgs() names the process after the VM and sets the basics", () => {
  const argv = qemuArgs(base);
  assert.equal(argv[0], "qemu-system-x86_64");
  assert.deepEqual(values(argv, "-name"), ["guest=web1,process=outpost-web1,debug-threads=on"]);
  assert.deepEqual(values(argv, "-uuid"), [base.uuid]);
  for (const flag of ["-nodefaults", "-no-user-config", "-daemonize"]) {
    assert.ok(argv.includes(flag));
  }
  assert.ok(!argv.includes("-no-reboot"), "a guest reboot must reboot");
  assert.ok(!argv.includes("-S"));
  assert.deepEqual(values(argv, "-display"), ["none"]);
  assert.deepEqual(values(argv, "-vga"), ["none"]);
  assert.deepEqual(values(argv, "-machine"), ["q35"]);
  assert.deepEqual(values(argv, "-m"), ["512M"]);
  assert.deepEqual(values(argv, "-smp"), ["2"]);
  assert.deepEqual(values(argv, "-pidfile"), ["/run/outpost/vms/web1/qemu.pid"]);
  assert.deepEqual(values(argv, "-D"), ["/run/outpost/vms/web1/qemu.log"]);
});

Deno.test("qemuArgs() picks the CPU model from the accelerator unless one is given", () => {
  const tcg = qemuArgs(base);
  assert.deepEqual(values(tcg, "-accel"), ["tcg"]);
  assert.deepEqual(values(tcg, "-cpu"), ["max"]);
  const kvm = qemuArgs({ ...base, accel: "kvm" });
  assert.deepEqual(values(kvm, "-accel"), ["kvm"]);
  assert.deepEqual(values(kvm, "-cpu"), ["host"]);
  assert.deepEqual(values(qemuArgs({ ...base, accel: "kvm", cpu: "qemu64" }), "-cpu"), ["qemu64"]);
});

Deno.test("qemuArgs() puts QMP, console and guest agent sockets in the runtime dir", () => {
  const argv = qemuArgs(base);
  const d = base.dir;
  assert.deepEqual(values(argv, "-chardev"), [
    `socket,id=qmp,path=${d}/qmp.sock,server=on,wait=off`,
    `socket,id=console,path=${d}/console.sock,server=on,wait=off,logfile=${d}/console.log,logappend=on`,
    `socket,id=qga0,path=${d}/qga.sock,server=on,wait=off`,
  ]);
  assert.deepEqual(values(argv, "-mon"), ["chardev=qmp,mode=control"]);
  assert.deepEqual(values(argv, "-serial"), ["chardev:console"]);
  const devices = values(argv, "-device");
  assert.ok(devices.includes("virtio-serial-pci,id=virtio-serial0"));
  assert.ok(
    devices.includes(
      "virtserialport,bus=virtio-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
    ),
  );
  assert.ok(devices.includes("virtio-rng-pci"));
  assert.deepEqual(vmPaths(d), {
    pid: `${d}/qemu.pid`,
    qmp: `${d}/qmp.sock`,
    console: `${d}/console.sock`,
    consoleLog: `${d}/console.log`,
    qga: `${d}/qga.sock`,
    log: `${d}/qemu.log`,
  });
});

Deno.test("qemuArgs() attaches the overlay as virtio-blk with the chosen cache mode", () => {
  const argv = qemuArgs(base);
  assert.deepEqual(values(argv, "-drive"), [
    `file=${base.disk},if=none,id=root,format=qcow2,cache=writeback,discard=unmap`,
  ]);
  // A kernel boot leaves boot index 0 to the kernel loader; a UEFI boot gives it to the disk.
  assert.ok(values(argv, "-device").includes("virtio-blk-pci,drive=root"));
  const none = qemuArgs({ ...base, diskCache: "none" });
  assert.match(values(none, "-drive")[0], /,cache=none,/);
});

Deno.test("qemuArgs() boots a kernel directly, with or without an initrd", () => {
  const argv = qemuArgs(base);
  assert.deepEqual(values(argv, "-kernel"), ["/img/vmlinux"]);
  assert.deepEqual(values(argv, "-initrd"), ["/img/initrd"]);
  assert.deepEqual(values(argv, "-append"), ["console=ttyS0"]);
  const bare = qemuArgs({ ...base, boot: { kind: "kernel", kernel: "/k", cmdline: "quiet, x=1" } });
  assert.deepEqual(values(bare, "-initrd"), []);
  assert.deepEqual(values(bare, "-append"), ["quiet, x=1"], "-append is not an option list");
});

Deno.test("qemuArgs() boots UEFI from read-only OVMF code and the VM's own vars", () => {
  const argv = qemuArgs({
    ...base,
    boot: { kind: "uefi", code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: `${base.dir}/vars.fd` },
  });
  assert.deepEqual(values(argv, "-kernel"), []);
  assert.deepEqual(values(argv, "-drive").slice(1), [
    "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
    `if=pflash,format=raw,unit=1,file=${base.dir}/vars.fd`,
  ]);
});

Deno.test("qemuArgs() adds a virtio-net NIC on a tap when given one", () => {
  assert.deepEqual(values(qemuArgs(base), "-netdev"), []);
  const argv = qemuArgs({ ...base, nics: [{ tap: "tap-web1", mac: "00:16:3E:AA:BB:CC" }] });
  assert.deepEqual(values(argv, "-netdev"), [
    "tap,id=net0,ifname=tap-web1,script=no,downscript=no",
  ]);
  assert.ok(values(argv, "-device").includes("virtio-net-pci,netdev=net0,mac=00:16:3e:aa:bb:cc"));
});

Deno.test("qemuArgs() escapes commas in paths inside option lists", () => {
  assert.equal(optValue("/a,b,,c"), "/a,,b,,,,c");
  const argv = qemuArgs({ ...base, dir: "/run/a,b", disk: "/var/x,y.qcow2" });
  assert.equal(
    values(argv, "-chardev")[0],
    "socket,id=qmp,path=/run/a,,b/qmp.sock,server=on,wait=off",
  );
  assert.match(values(argv, "-drive")[0], /^file=\/var\/x,,y\.qcow2,if=none/);
  // Plain path arguments are not option lists and stay as they are.
  assert.deepEqual(values(argv, "-pidfile"), ["/run/a,b/qemu.pid"]);
});

Deno.test("qemuArgs() supports foreground and paused starts and another binary", () => {
  const argv = qemuArgs({ ...base, foreground: true, paused: true, qemu: "/opt/qemu/bin/qemu" });
  assert.equal(argv[0], "/opt/qemu/bin/qemu");
  assert.ok(!argv.includes("-daemonize"));
  assert.ok(argv.includes("-S"));
});

Deno.test("qemuArgs() refuses a spec that cannot make a VM", () => {
  assert.throws(() => qemuArgs({ ...base, cpus: 0 }), /whole number of vCPUs/);
  assert.throws(() => qemuArgs({ ...base, cpus: 1.5 }), /whole number of vCPUs/);
  assert.throws(() => qemuArgs({ ...base, memoryMiB: 8 }), /at least 16 MiB/);
  assert.throws(() => qemuArgs({ ...base, name: "bad,name" }), /not a valid instance name/);
  assert.throws(() => qemuArgs({ ...base, dir: "relative" }), /directory must be an absolute path/);
  assert.throws(
    () => qemuArgs({ ...base, nics: [{ tap: "t", mac: "zz:00:00:00:00:00" }] }),
    /invalid MAC address/,
  );
});

Deno.test("QEMU 7.2 accepts the argv: a paused UEFI VM daemonizes and serves its sockets", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-args-" });
  let qmp: QmpClient | undefined;
  try {
    const disk = join(dir, "root.qcow2");
    const vars = join(dir, "vars.fd");
    await Deno.copyFile("/usr/share/OVMF/OVMF_VARS_4M.fd", vars);
    const img = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", disk, "64M"],
    }).output();
    assert.equal(img.code, 0, new TextDecoder().decode(img.stderr));
    const spec: VmSpec = {
      ...base,
      name: "argtest",
      dir,
      disk,
      cpus: 1,
      memoryMiB: 128,
      paused: true,
      boot: { kind: "uefi", code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars },
    };
    const argv = qemuArgs(spec);
    const out = await new Deno.Command(argv[0], { args: argv.slice(1), stdin: "null" }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));

    const paths = vmPaths(dir);
    const pid = Number((await Deno.readTextFile(paths.pid)).trim());
    assert.ok(pid > 0);
    assert.equal((await Deno.readTextFile(`/proc/${pid}/comm`)).trim(), "outpost-argtest");
    for (const sock of [paths.qmp, paths.console, paths.qga]) {
      assert.ok((await Deno.stat(sock)).isSocket, `${sock} is a socket`);
    }
    qmp = await QmpClient.connect(paths.qmp);
    assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    assert.deepEqual(await qmp.execute("query-name"), { name: "argtest" });
    assert.deepEqual(await qmp.execute("query-uuid"), { UUID: base.uuid });
    const cpus = await qmp.execute<unknown[]>("query-cpus-fast");
    assert.equal(cpus.length, 1);
    const blocks = await qmp.execute<{ device: string; qdev?: string }[]>("query-block");
    assert.ok(blocks.some((b) => b.qdev?.includes("virtio")));
    await qmp.execute("cont");
    assert.equal((await qmp.execute<{ running: boolean }>("query-status")).running, true);
    await qmp.quit();
    await qmp.closed;
    // Gone: the process disappears (QEMU removes its pid file on a clean exit).
    for (let i = 0; i < 100; i++) {
      try {
        await Deno.stat(`/proc/${pid}`);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await assert.rejects(Deno.stat(`/proc/${pid}`));
  } finally {
    qmp?.close();
    await killFromPidFile(vmPaths(dir).pid);
    await Deno.remove(dir, { recursive: true });
  }
});

/** Cleanup after a failed test: a daemonized QEMU is not our child, so signal it by pid. */
async function killFromPidFile(path: string) {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    if (pid > 0) Deno.kill(pid, "SIGKILL");
  } catch {
    // no pid file or no process: nothing to clean up
  }
}

Deno.test("qemuArgs() gives each block volume as a virtio disk with its device name as serial", () => {
  const argv = qemuArgs({
    ...base,
    disks: [
      { device: "data", file: "/p/custom/data/root.qcow2", readonly: false },
      { device: "ro,x", file: "/p/a,b/root.qcow2", readonly: true },
    ],
  });
  const drives = values(argv, "-drive");
  assert.ok(drives.includes(
    "file=/p/custom/data/root.qcow2,if=none,id=disk0,format=qcow2,cache=writeback,read-only=off",
  ));
  assert.ok(drives.includes(
    "file=/p/a,,b/root.qcow2,if=none,id=disk1,format=qcow2,cache=writeback,read-only=on",
  ));
  const devices = values(argv, "-device");
  assert.ok(devices.includes("virtio-blk-pci,drive=disk0,serial=data"));
  assert.ok(devices.includes("virtio-blk-pci,drive=disk1,serial=ro,,x"));
});
