/** The small interface every instance driver implements (LXC containers, QEMU VMs). */
import type { ImageSource } from "../agent/images.ts";
import type { InstanceRecord } from "../agent/store.ts";
import type { FileAccess } from "./files.ts";
import type { SnapshotAccess } from "./snapshots.ts";

export type PowerState = "Running" | "Stopped" | "Frozen" | "Error";

export interface NetworkAddress {
  family: "inet" | "inet6";
  address: string;
  netmask: string;
  scope: string;
}

export interface NetworkState {
  addresses: NetworkAddress[];
  counters: {
    bytes_received: number;
    bytes_sent: number;
    packets_received: number;
    packets_sent: number;
    errors_received: number;
    errors_sent: number;
    packets_dropped_inbound: number;
    packets_dropped_outbound: number;
  };
  hwaddr: string;
  host_name: string;
  mtu: number;
  state: "up" | "down";
  type: string;
}

/** The live state of one instance, shaped as Incus's `InstanceState`. */
export interface InstanceRuntime {
  status: PowerState;
  pid: number;
  processes: number;
  memory: { usage: number; usage_peak: number; swap_usage: number; swap_usage_peak: number };
  cpu: { usage: number };
  network: Record<string, NetworkState>;
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

/** The sub-directories of `dir` that do not start with a dot (none when it is missing). */
export async function subdirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory && !e.name.startsWith(".")) out.push(e.name);
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

export interface Driver {
  readonly type: InstanceRecord["type"];
  info(): DriverInfo;
  /** Creates the instance's storage from an image. */
  create(inst: InstanceRecord, image: ImageSource): Promise<void>;
  start(inst: InstanceRecord): Promise<void>;
  stop(inst: InstanceRecord, opts: StopOptions): Promise<void>;
  freeze(inst: InstanceRecord): Promise<void>;
  unfreeze(inst: InstanceRecord): Promise<void>;
  delete(inst: InstanceRecord): Promise<void>;
  /** Moves a stopped instance's storage to a new name. */
  rename(inst: InstanceRecord, newName: string): Promise<void>;
  /** The names of the instances whose storage exists (start-up recovery compares them). */
  storageNames(): Promise<string[]>;
  /**
   * Start-up recovery of one instance's storage after a crash: temp copies removed, an
   * interrupted restore finished or undone, snapshot storage without a record removed.
   * `snapshots` are the recorded snapshot names; returns what it did and which of them have no
   * storage.
   */
  recover(inst: InstanceRecord, snapshots: string[]): Promise<RecoveryReport>;
  state(inst: InstanceRecord): Promise<InstanceRuntime>;
  /** Cheap status check, without usage counters. */
  status(inst: InstanceRecord): Promise<PowerState>;
  exec(inst: InstanceRecord, req: ExecRequest, opts: ExecOptions): Promise<ExecProcess>;
  /**
   * Applies changed `limits.*` keys to a running instance (and rewrites its config for the next
   * start). `changed` names the keys that changed; others are left as they are.
   */
  applyLimits(inst: InstanceRecord, changed: string[]): Promise<void>;
  /** Attaches to the instance's console (a PTY stream), where the driver offers it. */
  console?(inst: InstanceRecord, opts: { width?: number; height?: number }): Promise<ExecProcess>;
  /** The console output kept since the instance started. */
  consoleLog?(inst: InstanceRecord): Promise<Uint8Array>;
  /** File access inside the instance, where the driver offers it. */
  readonly files?: FileAccess;
  /** Snapshots of the instance's storage, where the driver offers them. */
  readonly snapshots?: SnapshotAccess;
}
