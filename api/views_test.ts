import assert from "node:assert/strict";
import { NEVER } from "../agent/snapshots.ts";
import { snapshotView } from "./views.ts";

Deno.test("snapshotView() has the fields of Incus's InstanceSnapshot", () => {
  const view = snapshotView({
    instance: "c1",
    name: "s0",
    architecture: "x86_64",
    description: "",
    config: { "limits.cpu": "1" },
    devices: {},
    profiles: ["default"],
    ephemeral: false,
    created_at: "2024-02-01T00:00:00.000Z",
    expires_at: NEVER,
  }, {
    config: { "limits.cpu": "1", "limits.memory": "64MiB" },
    devices: { root: { type: "disk", path: "/", pool: "default" } },
  });
  assert.deepEqual(Object.keys(view).sort(), [
    "architecture",
    "config",
    "created_at",
    "description",
    "devices",
    "ephemeral",
    "expanded_config",
    "expanded_devices",
    "expires_at",
    "last_used_at",
    "name",
    "profiles",
    "size",
    "stateful",
  ]);
  assert.equal(view.name, "s0");
  assert.equal(view.stateful, false);
  assert.equal(view.size, -1);
  assert.equal(view.last_used_at, NEVER);
  assert.deepEqual(view.config, { "limits.cpu": "1" });
  assert.deepEqual(view.expanded_config, { "limits.cpu": "1", "limits.memory": "64MiB" });
  assert.deepEqual(view.expanded_devices, { root: { type: "disk", path: "/", pool: "default" } });
});
