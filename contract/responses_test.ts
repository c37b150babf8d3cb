import assert from "node:assert/strict";
import { InstanceStateSchema } from "./instance_state.ts";
import { InstanceSnapshotSchema, OperationSchema } from "./responses.ts";

Deno.test("the schemas are strict inside too: an extra nested field, a null list or an unknown status fails", () => {
  const snap = {
    name: "snap0",
    description: "",
    architecture: "x86_64",
    config: {},
    devices: {},
    profiles: [],
    ephemeral: false,
    stateful: false,
    expanded_config: {},
    expanded_devices: {},
    created_at: "2024-01-01T00:00:00Z",
    expires_at: "0001-01-01T00:00:00Z",
    last_used_at: "0001-01-01T00:00:00Z",
    size: -1,
  };
  assert.ok(InstanceSnapshotSchema.safeParse(snap).success);
  assert.ok(!InstanceSnapshotSchema.safeParse({ ...snap, profiles: null }).success);
  const state = {
    status: "Running",
    status_code: 103,
    pid: 1,
    processes: 1,
    disk: {},
    memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
    cpu: { usage: 0 },
    network: {},
  };
  assert.ok(InstanceStateSchema.safeParse(state).success);
  assert.ok(!InstanceStateSchema.safeParse({ ...state, cpu: { usage: 0, user: 0 } }).success);
  assert.ok(!InstanceStateSchema.safeParse({ ...state, status: "RUNNING" }).success);
});

Deno.test("an operation's status and code are the ones Incus defines", () => {
  const op = {
    id: "1",
    class: "task",
    description: "Creating instance",
    created_at: "2024-01-01T00:00:00Z",
    updated_at: "2024-01-01T00:00:00Z",
    status: "Success",
    status_code: 200,
    resources: { instances: ["/1.0/instances/c1"] },
    metadata: null,
    may_cancel: false,
    err: "",
    location: "none",
  };
  assert.ok(OperationSchema.safeParse(op).success);
  assert.ok(!OperationSchema.safeParse({ ...op, status: "Done" }).success);
  assert.ok(!OperationSchema.safeParse({ ...op, status_code: 201 }).success);
  assert.ok(!OperationSchema.safeParse({ ...op, class: "job" }).success);
});
