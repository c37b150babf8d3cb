/** The small interface every instance driver implements (LXC containers, QEMU VMs). */
import type { InstanceType } from "../contract/schemas.ts";
import type { FileAccess } from "./files.ts";
import type { SnapshotAccess } from "./snapshots.ts";
import type { InstanceRuntime, NetworkState, PowerState } from "../contract/instance_state.ts";
import type { PoolStorage } from "./storage/pool.ts";

/**
 * What a driver is told about an instance: a read-only view of its record. A driver never changes
 * it; the `volatile.*` keys it sets while creating or starting one come back as `VolatileChanges`
 * for the core to store.
 */
export interface InstanceSpec {
  readonly name: string;
  readonly type: InstanceType;
  readonly architecture: string;
  readonly config: Readonly<Record<string, string>>;
  readonly devices: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** At a start: the network interfaces to give the instance, planned by the core. */
  readonly nics?: readonly NicPlan[];
  /** At a start: host directories to bind-mount into a container. */
  readonly mounts?: readonly MountPlan[];
  /** At a start: extra disks (block volumes) for a VM. */
  readonly disks?: readonly DiskPlan[];
  /** The storage pool its root disk is on (absent: the driver's own directory). */
  readonly pool?: PoolPlan;
}

/** The pool an instance's storage is made on. */
export interface PoolPlan {
  name: string;
  storage: PoolStorage;
}

/** A block volume given to a VM as an extra disk. */
export interface DiskPlan {
  device: string;
  /** The volume's qcow2 file. */
  file: string;
  readonly: boolean;
}

/** A host directory bind-mounted into a container. */
export interface MountPlan {
  device: string;
  /** The host directory (absolute, checked to exist). */
  source: string;
  /** Where it shows in the container (absolute). */
  path: string;
  readonly: boolean;
  /** Through an idmapped mount: the host's ids shown as the container's own. */
  shift: boolean;
}

/** One network interface: a veth pair for a container, a tap for a VM; on a bridge, or p2p. */
export interface NicPlan {
  /** The device's name (`eth0`). */
  device: string;
  /** Its name inside the instance. */
  name: string;
  hwaddr: string;
  /** The host side's interface name (at most 15 characters). */
  hostName: string;
  /** The bridge it is attached to; none for a point-to-point nic (the host side is left alone). */
  bridge?: string;
  mtu?: number;
}

/** `volatile.*` keys a driver set (create, start); the core merges them into the record. */
export type VolatileChanges = Record<string, string>;

/** The spec with some config keys changed (for the rest of a create or start). */
export function withConfig(inst: InstanceSpec, changes: VolatileChanges): InstanceSpec {
  return { ...inst, config: { ...inst.config, ...changes } };
}

/** An image as a driver creates an instance from it. */
export interface ImageSource {
  /** The image's fingerprint (names its unpacked volume on a pool). */
  fingerprint?: string;
  /** The image file (a unified tarball). */
  file: string;
  /** VM images: the unpacked directory holding `rootfs.img` (and the boot files). */
  dir?: string;
  /** VM images that boot a kernel directly: absolute paths inside `dir`. */
  boot?: { kernel: string; initrd?: string; cmdline: string };
}

export interface StopOptions {
  force: boolean;
  /** Seconds to wait for a clean shutdown before killing; -1 waits forever. */
  timeout: number;
}

export interface ExecRequest {
  command: string[];
  environment: Record<string, string>;
  cwd?: string;
  user?: number;
  group?: number;
}

export interface ExecOptions {
  /** Run under a PTY (stdout carries the terminal; there is no separate stderr). */
  interactive: boolean;
  width?: number;
  height?: number;
}

/** A running command in an instance, with its standard streams. */
export interface ExecProcess {
  pid: number;
  /** Closing it is end-of-input. */
  stdin: WritableStream<Uint8Array>;
  stdout: ReadableStream<Uint8Array>;
  /** Absent for interactive commands. */
  stderr?: ReadableStream<Uint8Array>;
  resize(width: number, height: number): void;
  /** Sends a signal to the command (not to the tool that attached it). */
  signal(signo: number): Promise<void>;
  /** Ends the attaching tool itself (detaches a console). */
  kill(): void;
  /** The exit code (128 + signal for a command killed by a signal). */
  status: Promise<number>;
}

export interface RecoveryReport {
  actions: string[];
  missingSnapshots: string[];
}

/** The names in `dir`, sorted (none when it is missing). */
export async function entryNames(dir: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
}

/**
 * The sub-directories of `dir` (and symlinks, to a pool) that do not start with a dot (none when it
 * is missing).
 */
export async function subdirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      // A symlink is the storage of an instance on another pool.
      if ((e.isDirectory || e.isSymlink) && !e.name.startsWith(".")) out.push(e.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

export interface DriverInfo {
  name: string;
  version: string;
  available: boolean;
  error: string;
  /** Driver-specific facts for `GET /1.0` and `info --resources` (e.g. VM acceleration). */
  details?: Record<string, string>;
}

/** One network interface's counters, as `GET /1.0/instances/NAME/state` has them. */
export type InterfaceCounters = NetworkState["counters"];

/** The raw numbers of a running instance's metrics (seconds, bytes, counts). */
export interface InstanceMetrics {
  /** CPU time per cpu ("0", "1"...), in seconds. */
  cpu: { cpu: string; user: number; system: number }[];
  /** How many CPUs the instance may run on. */
  effectiveCpus?: number;
  /** memory.stat counters by Incus's name (`RSS`, `Cached`, `Mapped`...), in bytes. */
  memoryStat: Record<string, number>;
  /** The memory the instance may use (its limit, else the host's memory) and uses, in bytes. */
  memoryLimit?: number;
  memoryUsage?: number;
  swap?: number;
  oomKills?: number;
  network: Record<string, InterfaceCounters>;
  /** Block I/O per device (`sda`, or `MAJ:MIN` when unnamed) since the instance started. */
  disk?: Record<string, DiskCounters>;
  /** The filesystems of the instance's disks, by disk device name (`root`), in bytes. */
  filesystem?: Record<string, FilesystemUsage>;
  processes?: number;
}

export interface FilesystemUsage {
  fstype: string;
  mountpoint: string;
  size: number;
  free: number;
  avail: number;
}

export interface DiskCounters {
  readBytes: number;
  reads: number;
  writtenBytes: number;
  writes: number;
}

export interface Driver {
  readonly type: InstanceType;
  info(): DriverInfo;
  /** Creates the instance's storage from an image. */
  create(inst: InstanceSpec, image: ImageSource): Promise<VolatileChanges>;
  start(inst: InstanceSpec): Promise<VolatileChanges>;
  stop(inst: InstanceSpec, opts: StopOptions): Promise<void>;
  freeze(inst: InstanceSpec): Promise<void>;
  unfreeze(inst: InstanceSpec): Promise<void>;
  delete(inst: InstanceSpec): Promise<void>;
  /** Moves a stopped instance's storage to a new name. */
  rename(inst: InstanceSpec, newName: string): Promise<void>;
  /** The names of the instances whose storage exists (start-up recovery compares them). */
  storageNames(): Promise<string[]>;
  /**
   * Start-up recovery of one instance's storage after a crash: temp copies removed, an
   * interrupted restore finished or undone, snapshot storage without a record removed.
   * `snapshots` are the recorded snapshot names; returns what it did and which of them have no
   * storage.
   */
  recover(inst: InstanceSpec, snapshots: string[]): Promise<RecoveryReport>;
  state(inst: InstanceSpec): Promise<InstanceRuntime>;
  /** Cheap status check, without usage counters. */
  status(inst: InstanceSpec): Promise<PowerState>;
  exec(inst: InstanceSpec, req: ExecRequest, opts: ExecOptions): Promise<ExecProcess>;
  /**
   * Applies changed `limits.*` keys to a running instance (and rewrites its config for the next
   * start). `changed` names the keys that changed; others are left as they are.
   */
  applyLimits(inst: InstanceSpec, changed: string[]): Promise<void>;
  /** Usage counters of a running instance for `GET /1.0/metrics`, where the driver offers them. */
  metrics?(inst: InstanceSpec): Promise<InstanceMetrics>;
  /** Attaches to the instance's console (a PTY stream), where the driver offers it. */
  console?(inst: InstanceSpec, opts: { width?: number; height?: number }): Promise<ExecProcess>;
  /** The console output kept since the instance started. */
  consoleLog?(inst: InstanceSpec): Promise<Uint8Array>;
  /**
   * The runtime's own log files of the instance, by the name clients ask for (LXC's `lxc.log`,
   * QEMU's `qemu.log`) → host path, in a host-side dir the instance cannot write to.
   */
  runtimeLogs?(inst: InstanceSpec): Record<string, string>;
  /** File access inside the instance, where the driver offers it. */
  readonly files?: FileAccess;
  /** Snapshots of the instance's storage, where the driver offers them. */
  readonly snapshots?: SnapshotAccess;
  /**
   * Writes a unified image tarball (`metadata.yaml` + `rootfs/`) of a stopped instance, or of its
   * snapshot `from`, to `out`, its files owned by the instance's own ids (not the host's).
   */
  publish?(
    inst: InstanceSpec,
    opts: { from?: string; metadata: Record<string, unknown>; out: string },
  ): Promise<void>;
  /** Writes a backup tarball (Incus's layout) of a stopped or frozen instance to `out`. */
  backup?(
    inst: InstanceSpec,
    opts: { snapshots: string[]; index: Record<string, unknown>; out: string },
  ): Promise<void>;
  /** Makes `target`'s storage from a checked backup file, with the snapshots named. */
  restoreBackup?(
    target: InstanceSpec,
    opts: { file: string; snapshots: string[] },
  ): Promise<VolatileChanges>;
  /**
   * Makes `target`'s storage a copy of `source`'s (or of its snapshot `from`), with the snapshots
   * named in `snapshots` copied too. `source` is stopped or frozen; a failed copy leaves nothing.
   */
  copy?(
    source: InstanceSpec,
    target: InstanceSpec,
    opts: { from?: string; snapshots: string[] },
  ): Promise<VolatileChanges>;
}
