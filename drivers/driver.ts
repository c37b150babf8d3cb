/** The small interface every instance driver implements (LXC containers, QEMU VMs). */
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

export interface ExecResult {
  code: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

export interface DriverInfo {
  name: string;
  version: string;
  available: boolean;
  error: string;
}

export interface Driver {
  readonly type: InstanceRecord["type"];
  info(): DriverInfo;
  /** Creates the instance's storage from an unpacked image. */
  create(inst: InstanceRecord, image: { rootfsTarball: string }): Promise<void>;
  start(inst: InstanceRecord): Promise<void>;
  stop(inst: InstanceRecord, opts: StopOptions): Promise<void>;
  freeze(inst: InstanceRecord): Promise<void>;
  unfreeze(inst: InstanceRecord): Promise<void>;
  delete(inst: InstanceRecord): Promise<void>;
  state(inst: InstanceRecord): Promise<InstanceRuntime>;
  /** Cheap status check, without usage counters. */
  status(inst: InstanceRecord): Promise<PowerState>;
  exec(inst: InstanceRecord, req: ExecRequest): Promise<ExecResult>;
  /** Applies live-updatable config to a running instance. */
  applyLimits(inst: InstanceRecord): Promise<void>;
  /** File access inside the instance, where the driver offers it. */
  readonly files?: FileAccess;
  /** Snapshots of the instance's storage, where the driver offers them. */
  readonly snapshots?: SnapshotAccess;
}
