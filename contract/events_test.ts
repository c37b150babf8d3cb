import assert from "node:assert/strict";
import { EventSchema } from "./events.ts";

Deno.test("a lifecycle event names one of the actions outpost announces", () => {
  const event = {
    type: "lifecycle",
    timestamp: "2024-01-01T00:00:00Z",
    metadata: {
      action: "instance-started",
      source: "/1.0/instances/c1",
      context: {},
      requestor: null,
    },
    location: "none",
    project: "default",
  };
  assert.ok(EventSchema.safeParse(event).success);
  const unknown = { ...event, metadata: { ...event.metadata, action: "instance-launched" } };
  assert.ok(!EventSchema.safeParse(unknown).success);
  // The type decides the metadata: lifecycle metadata is not a logging event's.
  assert.ok(!EventSchema.safeParse({ ...event, type: "logging" }).success);
});
