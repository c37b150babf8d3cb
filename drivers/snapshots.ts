/** Instance snapshots: a narrow interface drivers may implement. */
import type { InstanceSpec } from "./driver.ts";

export interface SnapshotAccess {
  /** Copies the instance's storage into the snapshot `snap` (the instance may be running). */
  create(inst: InstanceSpec, snap: string): Promise<void>;
  /** Replaces the instance's storage with the snapshot's (the instance is stopped). */
  restore(inst: InstanceSpec, snap: string): Promise<void>;
  delete(inst: InstanceSpec, snap: string): Promise<void>;
  /** Renames a snapshot's storage. */
  rename(inst: InstanceSpec, from: string, to: string): Promise<void>;
}
