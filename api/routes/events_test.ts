import assert from "node:assert/strict";
import { BadRequest } from "../../contract/errors.ts";
import { parseEventTypes } from "./events.ts";

Deno.test("parseEventTypes() answers every type when none is asked for", () => {
  assert.deepEqual(parseEventTypes(undefined), ["operation", "lifecycle", "logging"]);
  assert.deepEqual(parseEventTypes(""), ["operation", "lifecycle", "logging"]);
});

Deno.test("parseEventTypes() answers the types asked for, once each", () => {
  assert.deepEqual(parseEventTypes("operation"), ["operation"]);
  assert.deepEqual(parseEventTypes("lifecycle, operation"), ["lifecycle", "operation"]);
  assert.deepEqual(parseEventTypes("logging,logging"), ["logging"]);
});

Deno.test("parseEventTypes() refuses unknown, empty and control-character entries", () => {
  for (const raw of ["bogus", "operation,", ",operation", "operation,\n", "\0", "lifecycle,x"]) {
    assert.throws(
      () => parseEventTypes(raw),
      (err: unknown) => err instanceof BadRequest && err.message.startsWith("Unknown event type"),
      JSON.stringify(raw),
    );
  }
  assert.throws(
    () => parseEventTypes("a".repeat(5000)),
    (err: unknown) => err instanceof BadRequest && err.message.length < 120,
  );
});
