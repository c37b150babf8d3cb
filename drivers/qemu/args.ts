/**
 * The QEMU command line for a VM, built from a typed spec with no side effects. Every socket and
 * log lives in the VM's runtime directory (`vmPaths`), so the driver and the tests agree on them.
 */
import { join } from "node:path";

export type Accel = "kvm" | "tcg";

/** A direct kernel boot (`-kernel`, PVH `vmlinux` or bzImage), the fastest under TCG. */
export interface KernelBoot {
  kind: "kernel";
  kernel: string;
  initrd?: string;
  cmdline: string;
}

/** A UEFI boot: the shared read-only OVMF code and this VM's own copy of the variable store. */
export interface UefiBoot {
  kind: "uefi";
  code: string;
  vars: string;
}

export interface VmSpec {
  /** The instance name (an RFC 1123 label): shown by `ps` as the process `outpost-<name>`. */
  name: string;
  uuid: string;
  /** The VM's runtime directory: pid file, sockets, logs. */
  dir: string;
  accel: Accel;
  /** The CPU model; default `host` under KVM and `max` under TCG. */
  cpu?: string;
  cpus: number;
  memoryMiB: number;
  /** The VM's qcow2 overlay. */
  disk: string;
  /** The disk cache mode; `none` (O_DIRECT) fails on tmpfs, hence `writeback` by default. */
  diskCache?: "none" | "writeback" | "writethrough" | "directsync" | "unsafe";
  boot: KernelBoot | UefiBoot;
  /** Extra disks (block volumes): qcow2 files, each a virtio disk whose serial is its device name. */
  disks?: { device: string; file: string; readonly: boolean }[];
  /** Network interfaces: taps QEMU makes (and removes as it exits), each a virtio-net. */
  nics?: { tap: string; mac: string }[];
  /** Stay in the foreground instead of `-daemonize` (tests, supervisors). */
  foreground?: boolean;
  /** Start with the vCPUs stopped (`-S`): QMP `cont` runs the guest. */
  paused?: boolean;
  /** The QEMU binary; default `qemu-system-x86_64`. */
  qemu?: string;
}

export const QGA_PORT_NAME = "org.qemu.guest_agent.0";

/** The files QEMU creates in a VM's runtime directory. */
export function vmPaths(dir: string) {
  return {
    pid: join(dir, "qemu.pid"),
    qmp: join(dir, "qmp.sock"),
    console: join(dir, "console.sock"),
    consoleLog: join(dir, "console.log"),
    qga: join(dir, "qga.sock"),
    log: join(dir, "qemu.log"),
  };
}

/** Escapes a value inside a QEMU option list (`key=value,...`): a comma is written twice. */
export function optValue(value: string): string {
  return value.replaceAll(",", ",,");
}

function opts(head: string, pairs: Record<string, string | undefined>): string {
  const parts = [head];
  for (const [k, v] of Object.entries(pairs)) {
    if (v !== undefined) parts.push(`${k}=${optValue(v)}`);
  }
  return parts.join(",");
}

const NAME = /^[a-zA-Z][a-zA-Z0-9-]{0,62}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function check(spec: VmSpec) {
  if (!NAME.test(spec.name)) throw new Error(`VM name "${spec.name}" is not a valid instance name`);
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1) {
    throw new Error(
      `VM "${spec.name}" needs a whole number of vCPUs (1 or more), not ${spec.cpus}`,
    );
  }
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) {
    throw new Error(`VM "${spec.name}" needs at least 16 MiB of memory, not ${spec.memoryMiB}`);
  }
  for (const nic of spec.nics ?? []) {
    if (!MAC.test(nic.mac)) {
      throw new Error(`VM "${spec.name}" has an invalid MAC address "${nic.mac}"`);
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(nic.tap)) {
      throw new Error(`VM "${spec.name}" has an invalid tap name "${nic.tap}"`);
    }
  }
  for (const [what, path] of [["directory", spec.dir], ["disk", spec.disk]]) {
    if (!path.startsWith("/")) {
      throw new Error(`VM "${spec.name}" ${what} must be an absolute path`);
    }
  }
}

/** The full argv (binary first) to start the VM described by `spec`. */
export function qemuArgs(spec: VmSpec): string[] {
  check(spec);
  const p = vmPaths(spec.dir);
  const cpu = spec.cpu ?? (spec.accel === "kvm" ? "host" : "max");
  const argv = [
    spec.qemu ?? "qemu-system-x86_64",
    "-name",
    opts(`guest=${optValue(spec.name)}`, {
      process: `outpost-${spec.name}`,
      "debug-threads": "on",
    }),
    "-uuid",
    spec.uuid,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-vga",
    "none",
    "-machine",
    "q35",
    "-accel",
    spec.accel,
    "-cpu",
    cpu,
    "-m",
    `${spec.memoryMiB}M`,
    "-smp",
    String(spec.cpus),
  ];
  if (!spec.foreground) argv.push("-daemonize");
  argv.push("-pidfile", p.pid, "-D", p.log);
  if (spec.paused) argv.push("-S");

  // Control: QMP on a chardev (a path with a comma survives, unlike `-qmp unix:PATH`).
  argv.push(
    "-chardev",
    opts("socket", { id: "qmp", path: p.qmp, server: "on", wait: "off" }),
    "-mon",
    "chardev=qmp,mode=control",
  );
  // Serial console: the log keeps the whole boot even when nobody is attached.
  argv.push(
    "-chardev",
    opts("socket", {
      id: "console",
      path: p.console,
      server: "on",
      wait: "off",
      logfile: p.consoleLog,
      logappend: "on",
    }),
    "-serial",
    "chardev:console",
  );
  // Guest agent on a virtio-serial port.
  argv.push(
    "-device",
    "virtio-serial-pci,id=virtio-serial0",
    "-chardev",
    opts("socket", { id: "qga0", path: p.qga, server: "on", wait: "off" }),
    "-device",
    `virtserialport,bus=virtio-serial0.0,chardev=qga0,name=${QGA_PORT_NAME}`,
  );
  // Root disk.
  argv.push(
    "-drive",
    opts(`file=${optValue(spec.disk)}`, {
      if: "none",
      id: "root",
      format: "qcow2",
      cache: spec.diskCache ?? "writeback",
      discard: "unmap",
    }),
    "-device",
    // A direct kernel boot takes boot index 0 itself (the linuxboot option ROM).
    spec.boot.kind === "uefi"
      ? "virtio-blk-pci,drive=root,bootindex=0"
      : "virtio-blk-pci,drive=root",
  );
  for (const [i, d] of (spec.disks ?? []).entries()) {
    argv.push(
      "-drive",
      opts(`file=${optValue(d.file)}`, {
        if: "none",
        id: `disk${i}`,
        format: "qcow2",
        cache: spec.diskCache ?? "writeback",
        "read-only": d.readonly ? "on" : "off",
      }),
      "-device",
      // The serial shows in the guest as /dev/disk/by-id/virtio-DEVICE.
      `virtio-blk-pci,drive=disk${i},serial=${optValue(d.device.slice(0, 20))}`,
    );
  }
  argv.push("-device", "virtio-rng-pci");
  for (const [i, nic] of (spec.nics ?? []).entries()) {
    argv.push(
      "-netdev",
      opts("tap", { id: `net${i}`, ifname: nic.tap, script: "no", downscript: "no" }),
      "-device",
      `virtio-net-pci,netdev=net${i},mac=${nic.mac.toLowerCase()}`,
    );
  }
  const boot = spec.boot;
  if (boot.kind === "kernel") {
    argv.push("-kernel", boot.kernel);
    if (boot.initrd) argv.push("-initrd", boot.initrd);
    argv.push("-append", boot.cmdline);
  } else {
    argv.push(
      "-drive",
      opts("if=pflash", { format: "raw", unit: "0", readonly: "on", file: boot.code }),
      "-drive",
      opts("if=pflash", { format: "raw", unit: "1", file: boot.vars }),
    );
  }
  return argv;
}
