import assert from "node:assert/strict";
import type { z } from "zod";
import {
  CertificatesPostSchema,
  ExecPostSchema,
  ImagesPostSchema,
  InstancePatchSchema,
  InstancePostSchema,
  InstancePutSchema,
  InstancesPostSchema,
  InstanceStatePutSchema,
  MAX_CERTIFICATE_TEXT,
  SnapshotPostSchema,
  SnapshotsPostSchema,
} from "./schemas.ts";
import { INCUS6_RENAME } from "../tests/client_bodies.ts";

/** The first issue's message of a refused body ("" when the body parses). */
function refusal(schema: z.ZodType, body: unknown): string {
  const r = schema.safeParse(body);
  if (r.success) return "";
  const issue = r.error.issues[0];
  return issue.code === "unrecognized_keys"
    ? `unknown ${issue.keys.join(",")}`
    : `${issue.path.join(".")}: ${issue.message}`;
}

// Request bodies as the clients marshal them (Go's zero values included), recorded from
// `incus launch` and `lxc launch` (../shared/api-samples) or built from their request types.
const INCUS6_LAUNCH = {
  architecture: "",
  config: {},
  devices: {},
  ephemeral: false,
  profiles: ["default"],
  stateful: false,
  description: "",
  name: "c1",
  source: { type: "image", certificate: "", fingerprint: "7328e5", allow_inconsistent: false },
  instance_type: "",
  type: "container",
  start: true,
};
const LXD5_COPY_SOURCE = {
  type: "copy",
  certificate: "",
  "base-image": "7328e5",
  source: "c0",
  live: false,
  instance_only: false,
  container_only: false,
  refresh: false,
  project: "default",
  allow_inconsistent: false,
};
const LXD5_RENAME = {
  name: "c2",
  migration: false,
  live: false,
  instance_only: false,
  container_only: false,
  target: null,
  pool: "",
  project: "",
  allow_inconsistent: false,
};
const EXEC_ALL_FIELDS = {
  command: ["echo", "hi"],
  "wait-for-websocket": true,
  interactive: false,
  environment: { TERM: "xterm" },
  width: 0,
  height: 0,
  "record-output": false,
  user: 0,
  group: 0,
  cwd: "",
};

Deno.test("the requests Incus 6 and LXD 5.0 clients send parse", () => {
  const cases: [z.ZodType, unknown][] = [
    [InstancesPostSchema, INCUS6_LAUNCH],
    [InstancesPostSchema, { ...INCUS6_LAUNCH, type: "", start: false, restore: "" }],
    [InstancesPostSchema, { ...INCUS6_LAUNCH, source: LXD5_COPY_SOURCE }],
    [InstancesPostSchema, { ...INCUS6_LAUNCH, config: null, devices: null, profiles: null }],
    [InstancePostSchema, INCUS6_RENAME],
    [InstancePostSchema, LXD5_RENAME],
    [InstancePostSchema, { ...INCUS6_RENAME, Config: {}, Devices: {}, Profiles: [] }],
    [InstancePostSchema, { name: "c2", config: null, devices: null, profiles: null }],
    [InstanceStatePutSchema, { action: "stop", timeout: 30, force: true, stateful: false }],
    [ExecPostSchema, EXEC_ALL_FIELDS],
    [ExecPostSchema, { ...EXEC_ALL_FIELDS, interactive: true, width: 80, height: 24 }],
    [SnapshotsPostSchema, { name: "s0", stateful: false, expires_at: null }],
    [SnapshotPostSchema, { name: "s1", migration: false, target: null }],
    [InstancePutSchema, { config: {}, devices: {}, profiles: [], restore: "s0", disk_only: true }],
    [InstancePatchSchema, { config: { "user.a": "1" }, restore: "" }],
    [ImagesPostSchema, {
      auto_update: false,
      properties: null,
      public: false,
      expires_at: "0001-01-01T00:00:00Z",
      profiles: null,
      filename: "",
      source: { type: "instance", name: "c1", alias: "", certificate: "", protocol: "" },
      compression_algorithm: "",
      aliases: [{ name: "img", description: "" }],
    }],
  ];
  for (const [schema, body] of cases) assert.equal(refusal(schema, body), "", JSON.stringify(body));
});

Deno.test("a field no client sends is refused by name", () => {
  assert.equal(refusal(InstancesPostSchema, { ...INCUS6_LAUNCH, colour: 1 }), "unknown colour");
  assert.equal(
    refusal(InstancesPostSchema, { ...INCUS6_LAUNCH, source: { type: "image", colour: 1 } }),
    "unknown colour",
  );
  assert.equal(refusal(InstancePostSchema, { ...INCUS6_RENAME, colour: 1 }), "unknown colour");
  assert.equal(refusal(ExecPostSchema, { ...EXEC_ALL_FIELDS, colour: 1 }), "unknown colour");
  assert.equal(refusal(InstancePutSchema, { config: {}, Config: {} }), "unknown Config");
});

Deno.test("a field set to what outpost cannot honour is refused, saying it is not supported", () => {
  const cases: [z.ZodType, unknown, RegExp][] = [
    [InstancePostSchema, { ...INCUS6_RENAME, migration: true }, /^migration: .*not supported/],
    [InstancePostSchema, { ...INCUS6_RENAME, live: true }, /^live: Live migration is not/],
    [InstancePostSchema, { ...INCUS6_RENAME, pool: "p" }, /^pool: .*storage pools/],
    [InstancePostSchema, { ...INCUS6_RENAME, project: "p" }, /^project: .*"default" project/],
    [InstancePostSchema, { ...INCUS6_RENAME, target: {} }, /^target: .*not supported/],
    [InstancePostSchema, { ...INCUS6_RENAME, Profiles: ["x"] }, /^Profiles: Profiles overrides/],
    [InstancePostSchema, { name: "c2", config: { a: "1" } }, /^config: Config overrides/],
    [InstancesPostSchema, { ...INCUS6_LAUNCH, instance_type: "c2-m4" }, /limits\.cpu/],
    [InstancesPostSchema, { ...INCUS6_LAUNCH, restore: "s0" }, /^restore: /],
    [
      InstancesPostSchema,
      { ...INCUS6_LAUNCH, source: { type: "image", alias: "a", project: "p" } },
      /^source\.project: .*"default" project/,
    ],
    [InstanceStatePutSchema, { action: "stop", stateful: true }, /Stateful stop\/start/],
    [SnapshotPostSchema, { name: "s1", migration: true }, /Snapshot migration/],
    [InstancePatchSchema, { restore: "s0" }, /^restore: A PATCH cannot restore/],
  ];
  for (const [schema, body, expected] of cases) {
    assert.match(refusal(schema, body), expected, JSON.stringify(body));
  }
});

Deno.test("the defaults of a field outpost cannot honour keep their wrong types refused", () => {
  assert.match(refusal(InstancePostSchema, { ...INCUS6_RENAME, live: "no" }), /^live: /);
  assert.match(refusal(InstancePostSchema, { ...INCUS6_RENAME, migration: null }), /^migration/);
  assert.match(refusal(InstancePostSchema, { ...INCUS6_RENAME, pool: 0 }), /^pool: /);
  assert.match(refusal(InstancePostSchema, { ...INCUS6_RENAME, Config: 5 }), /^Config: /);
  assert.match(refusal(InstancePostSchema, { ...INCUS6_RENAME, Profiles: "x" }), /^Profiles: /);
  assert.match(refusal(InstanceStatePutSchema, { action: "stop", stateful: 1 }), /^stateful: /);
});

Deno.test("a certificate to trust is at most 64 KiB of text", () => {
  const big = { name: "x", certificate: "A".repeat(MAX_CERTIFICATE_TEXT + 1) };
  assert.equal(CertificatesPostSchema.safeParse(big).success, false);
  const fits = { name: "x", certificate: "A".repeat(MAX_CERTIFICATE_TEXT) };
  assert.equal(CertificatesPostSchema.safeParse(fits).success, true);
});
