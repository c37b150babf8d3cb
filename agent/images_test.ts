/**
 * The image store: imports of small tarballs (through the real `tar`), and how images and the
 * instances made from them depend on each other (with the in-memory test double as driver).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, Conflict, NotFound } from "../contract/errors.ts";
import { Runner } from "../drivers/runner.ts";
import { type Core, createRequest, withCore } from "../tests/core_fixture.ts";

/** A unified container image tarball (metadata.yaml + rootfs/), as bytes. */
async function containerTarball(metadata: string, withRootfs = true): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-image-src-" });
  try {
    await Deno.writeTextFile(join(dir, "metadata.yaml"), metadata);
    const members = ["metadata.yaml"];
    if (withRootfs) {
      await Deno.mkdir(join(dir, "rootfs", "etc"), { recursive: true });
      await Deno.writeTextFile(join(dir, "rootfs", "etc", "hostname"), "test\n");
      members.push("rootfs");
    }
    await new Runner().run(["tar", "-czf", join(dir, "image.tar.gz"), "-C", dir, ...members]);
    return await Deno.readFile(join(dir, "image.tar.gz"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const METADATA = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: tiny\n";

const importBytes = (core: Core, bytes: Uint8Array) =>
  core.images.import(ReadableStream.from([bytes]), { filename: "tiny.tar.gz" });

/** The entries of the images dir (uploads in progress start with a dot). */
const imageFiles = (core: Core) => [...Deno.readDirSync(core.paths.images)].map((e) => e.name);

Deno.test("import of a container tarball records it by sha256 and emits image-created", () =>
  withCore(async (core) => {
    const bytes = await containerTarball(METADATA);
    const rec = await importBytes(core, bytes);
    const sha = createHash("sha256").update(bytes).digest("hex");
    assert.equal(rec.fingerprint, sha);
    assert.equal(rec.type, "container");
    assert.deepEqual(rec.properties, { os: "tiny" });
    assert.equal(rec.created_at, "2023-11-14T22:13:20.000Z");
    assert.deepEqual(core.images.get(sha), rec);
    assert.deepEqual(await Deno.readFile(core.images.file(sha)), bytes);
    assert.deepEqual(core.lifecycle.map((e) => e.action), ["image-created"]);
  }));

Deno.test("import of an image already stored is a Conflict and leaves no upload behind", () =>
  withCore(async (core) => {
    const bytes = await containerTarball(METADATA);
    await importBytes(core, bytes);
    const files = imageFiles(core).sort();
    await assert.rejects(importBytes(core, bytes), Conflict);
    assert.deepEqual(imageFiles(core).sort(), files);
  }));

Deno.test("import of a tarball with no rootfs is a BadRequest and stores nothing", () =>
  withCore(async (core) => {
    const before = core.images.list().length;
    const files = imageFiles(core).sort();
    await assert.rejects(importBytes(core, await containerTarball(METADATA, false)), BadRequest);
    assert.equal(core.images.list().length, before);
    assert.deepEqual(imageFiles(core).sort(), files);
  }));

Deno.test("export streams the image's file as uploaded and emits image-retrieved", () =>
  withCore(async (core) => {
    const bytes = await containerTarball(METADATA);
    const rec = await importBytes(core, bytes);
    core.reset();
    const out = await core.images.export(rec.fingerprint.slice(0, 12));
    assert.equal(out.image.fingerprint, rec.fingerprint);
    assert.equal(out.size, bytes.length);
    assert.deepEqual(new Uint8Array(await new Response(out.body).arrayBuffer()), bytes);
    assert.deepEqual(core.lifecycle, [{
      action: "image-retrieved",
      source: `/1.0/images/${rec.fingerprint}`,
      context: {},
    }]);
  }));

Deno.test("export of an unknown image, or of one whose file is gone, is NotFound", () =>
  withCore(async (core) => {
    await assert.rejects(core.images.export("f".repeat(64)), NotFound);
    // The fixture's image has a record and no file.
    await assert.rejects(core.images.export(core.image.fingerprint), /is missing/);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("a container is created from its image's file", () =>
  withCore(async (core) => {
    await core.instances.prepareCreate(createRequest("c1"))();
    assert.deepEqual(core.driver.called("create")[0].args[0], {
      fingerprint: core.image.fingerprint,
      file: core.images.file(core.image.fingerprint),
    });
  }));

Deno.test("a VM is created from its image's unpacked directory", () =>
  withCore(async (core) => {
    await core.instances.prepareCreate(createRequest("v1", { type: "virtual-machine" }))();
    const fp = core.vmImage.fingerprint;
    assert.deepEqual(core.vmDriver.called("create")[0].args[0], {
      fingerprint: fp,
      file: core.images.file(fp),
      dir: core.images.dir(fp),
      boot: undefined,
    });
  }));

Deno.test("deleting an image that backs a VM's disk is a Conflict and keeps it", () =>
  withCore(async (core) => {
    await core.create("v1", { type: "virtual-machine" });
    await assert.rejects(
      core.images.delete(core.vmImage.fingerprint),
      (err: Error) => err instanceof Conflict && /backs the disk of VM "v1"/.test(err.message),
    );
    assert.ok(core.store.getImage(core.vmImage.fingerprint));
    assert.ok(core.store.getAlias("vm"));
  }));

Deno.test("an image that backed a VM can be deleted once the VM is gone", () =>
  withCore(async (core) => {
    await core.create("v1", { type: "virtual-machine" });
    await (await core.instances.prepareDelete("v1"))();
    await core.images.delete(core.vmImage.fingerprint);
    assert.equal(core.store.getImage(core.vmImage.fingerprint), undefined);
  }));

Deno.test("an image a container was made from can be deleted; the container stays", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.images.delete(core.image.fingerprint);
    assert.equal(core.store.getImage(core.image.fingerprint), undefined);
    assert.ok(core.store.getInstance("c1"));
  }));

Deno.test("deleting an image removes its aliases, its files and emits image-deleted", () =>
  withCore(async (core) => {
    const fp = core.vmImage.fingerprint;
    await Deno.writeTextFile(core.images.file(fp), "tarball");
    await core.images.delete(fp);
    assert.equal(core.store.getAlias("vm"), undefined);
    assert.equal(existsSync(core.images.file(fp)), false);
    assert.equal(existsSync(core.images.dir(fp)), false);
    assert.deepEqual(core.lifecycle, [
      { action: "image-deleted", source: `/1.0/images/${fp}`, context: {} },
    ]);
  }));
