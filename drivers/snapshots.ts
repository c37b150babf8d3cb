/** Instance snapshots: a narrow interface drivers may implement. */
import type { InstanceRecord } from "../agent/store.ts";

export interface SnapshotAccess {
  /** Copies the instance's storage into the snapshot `snap` (the instance may be running). */
  create(inst: InstanceRecord, snap: string): Promise<void>;
  /** Replaces the instance's storage with the snapshot's (the instance is stopped). */
  restore(inst: InstanceRecord, snap: string): Promise<void>;
  delete(inst: InstanceRecord, snap: string): Promise<void>;
  /** Renames a snapshot's storage. */
  rename(inst: InstanceRecord, from: string, to: string): Promise<void>;
}
