import assert from "node:assert/strict";
import type { Hono } from "hono";
import { z } from "zod";
import { EventSchema } from "../contract/events.ts";
import { InstanceStateSchema } from "../contract/instance_state.ts";
import {
  AsyncEnvelopeSchema,
  CertificateSchema,
  ErrorEnvelopeSchema,
  ImageAliasesEntrySchema,
  ImageSchema,
  InstanceFullSchema,
  InstanceSchema,
  InstanceSnapshotSchema,
  type Operation,
  OperationSchema,
  ResourcesSchema,
  ServerSchema,
  SyncEnvelopeSchema,
} from "../contract/responses.ts";
import { withApp } from "../tests/app_fixture.ts";
import { makeCert } from "../tests/certs.ts";

/**
 * The metadata of the sync answer to a GET, parsed with `schema`. For an object (or the first of
 * a list of objects, which must not be empty) the metadata must also fail with a field added or
 * one dropped: the schema describes every field, no more and no less.
 */
async function answer<T extends z.ZodType>(
  app: Hono,
  path: string,
  schema: T,
): Promise<z.infer<T>> {
  const res = await app.request(path);
  const body = await res.json();
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(body)}`);
  SyncEnvelopeSchema.parse(body);
  const parsed = schema.safeParse(body.metadata);
  assert.ok(parsed.success, `${path}: ${parsed.error}`);
  const item = schema instanceof z.ZodArray ? schema.element : schema;
  if (item instanceof z.ZodObject) {
    const one = Array.isArray(body.metadata) ? body.metadata[0] : body.metadata;
    assert.ok(one, `${path}: an empty list`);
    const [first] = Object.keys(one);
    const { [first]: _dropped, ...fewer } = one;
    assert.ok(!item.safeParse({ ...one, extra: 1 }).success, `${path}: an extra field passed`);
    assert.ok(!item.safeParse(fewer).success, `${path}: "${first}" was not required`);
  }
  return parsed.data;
}

/** Sends a long verb: the 202 answer parses, and the operation ends in success. */
async function operation(app: Hono, method: string, path: string, body: unknown) {
  const res = await app.request(path, {
    method,
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  const started = AsyncEnvelopeSchema.parse(await res.json());
  assert.equal(res.status, 202);
  assert.equal(res.headers.get("location"), started.operation);
  const done: Operation = await answer(app, `${started.operation}/wait`, OperationSchema);
  assert.equal(done.status, "Success", done.err);
  return done;
}

Deno.test("every answer and event of the API parses with the contract's strict schemas", () =>
  withApp(async (app, agent, core) => {
    const sent: string[] = [];
    agent.events.subscribeSink(["operation", "lifecycle", "logging"], {
      readyState: 1,
      bufferedAmount: 0,
      send: (data) => sent.push(data),
      close: () => {},
    });
    core.driver.network = {
      eth0: {
        addresses: [{ family: "inet", address: "10.0.0.2", netmask: "24", scope: "global" }],
        counters: {
          bytes_received: 1,
          bytes_sent: 2,
          packets_received: 3,
          packets_sent: 4,
          errors_received: 0,
          errors_sent: 0,
          packets_dropped_inbound: 0,
          packets_dropped_outbound: 0,
        },
        hwaddr: "00:16:3e:00:00:01",
        host_name: "veth1",
        mtu: 1500,
        state: "up",
        type: "broadcast",
      },
    };

    await answer(app, "/1.0", ServerSchema);
    await answer(app, "/1.0/resources", ResourcesSchema);

    const source = { type: "image", alias: "busybox" };
    await operation(app, "POST", "/1.0/instances", { name: "c1", source, start: true });
    await operation(app, "POST", "/1.0/instances", {
      name: "v1",
      type: "virtual-machine",
      source: { type: "image", alias: "vm" },
    });
    await operation(app, "POST", "/1.0/instances/c1/snapshots", { name: "snap0" });

    await answer(app, "/1.0/instances", z.array(z.string()));
    await answer(app, "/1.0/instances?recursion=1", z.array(InstanceSchema));
    const full = await answer(app, "/1.0/instances?recursion=2", z.array(InstanceFullSchema));
    assert.deepEqual(full.map((i) => [i.name, i.status, i.snapshots?.length ?? 0]), [
      ["c1", "Running", 1],
      ["v1", "Stopped", 0],
    ]);
    assert.equal(full[0].state.network.eth0.addresses[0].address, "10.0.0.2");
    await answer(app, "/1.0/instances/c1", InstanceSchema);
    await answer(app, "/1.0/instances/c1?recursion=1", InstanceFullSchema);
    await answer(app, "/1.0/instances/c1/state", InstanceStateSchema);
    await answer(app, "/1.0/instances/c1/snapshots", z.array(z.string()));
    await answer(app, "/1.0/instances/c1/snapshots?recursion=1", z.array(InstanceSnapshotSchema));
    await answer(app, "/1.0/instances/c1/snapshots/snap0", InstanceSnapshotSchema);

    await answer(app, "/1.0/images?recursion=1", z.array(ImageSchema));
    await answer(app, `/1.0/images/${core.image.fingerprint}`, ImageSchema);
    await answer(app, "/1.0/images/aliases?recursion=1", z.array(ImageAliasesEntrySchema));
    await answer(app, "/1.0/images/aliases/busybox", ImageAliasesEntrySchema);

    const certDir = await Deno.makeTempDir({ prefix: "outpost-contract-cert-" });
    try {
      const cert = await makeCert(certDir, "client");
      const added = await app.request("/1.0/certificates", {
        method: "POST",
        body: JSON.stringify({ certificate: cert.base64, name: "c" }),
      });
      SyncEnvelopeSchema.parse(await added.json());
      assert.equal(added.status, 201);
      await answer(app, "/1.0/certificates", z.array(z.string()));
      await answer(app, "/1.0/certificates?recursion=1", z.array(CertificateSchema));
      await answer(app, `/1.0/certificates/${cert.fingerprint}`, CertificateSchema);
    } finally {
      await Deno.remove(certDir, { recursive: true });
    }

    const ops = await answer(
      app,
      "/1.0/operations?recursion=1",
      z.record(z.string(), z.array(OperationSchema)),
    );
    const [op] = ops.success;
    await answer(app, `/1.0/operations/${op.id}`, OperationSchema);

    for (const path of ["/1.0/instances/nope", "/1.0/nowhere"]) {
      const res = await app.request(path);
      assert.equal(res.status, 404);
      const error = ErrorEnvelopeSchema.parse(await res.json());
      assert.equal(error.error_code, 404);
    }

    const events = sent.map((text) => EventSchema.parse(JSON.parse(text)));
    const actions = events.flatMap((e) => e.type === "lifecycle" ? [e.metadata.action] : []);
    assert.deepEqual(actions, [
      "instance-created",
      "instance-started",
      "instance-created",
      "instance-snapshot-created",
      "certificate-created",
    ]);
    assert.ok(events.some((e) => e.type === "operation" && e.metadata.status_code === 200));
  }));
