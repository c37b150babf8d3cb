/**
 * Profiles against the in-memory instance driver: stacking and expansion, what a driver is told,
 * the checks on create, update, rename and delete, and how a profile edit reaches the instances.
 */
import assert from "node:assert/strict";
import { BadRequest, Conflict, NotFound, PreconditionFailed } from "../contract/errors.ts";
import { withCore } from "../tests/core_fixture.ts";
import { expand } from "./profiles.ts";

const ROOT = { type: "disk", path: "/", pool: "default" };

Deno.test("expand() stacks profiles in order under the instance's own keys; none hides a device", () => {
  const p = (name: string, config: Record<string, string>, devices = {}) => ({
    name,
    description: "",
    config,
    devices,
  });
  const e = expand(
    [
      p("a", { "limits.cpu": "1", "limits.memory": "64MiB" }, { root: ROOT, d: { type: "none" } }),
      p("b", { "limits.memory": "128MiB", "user.b": "1" }),
    ],
    { "user.b": "2" },
    { root: { type: "none" } },
  );
  assert.deepEqual(e.config, { "limits.cpu": "1", "limits.memory": "128MiB", "user.b": "2" });
  assert.deepEqual(e.devices, {});
});

Deno.test("the default profile exists with the root disk; an instance made without profiles gets it", () =>
  withCore(async (core) => {
    const { profiles } = core.instances;
    assert.deepEqual(profiles.get("default").devices, { root: ROOT });
    const inst = await core.create("c1", { profiles: undefined });
    assert.deepEqual(inst.profiles, ["default"]);
    assert.deepEqual(profiles.expand(inst).devices, { root: ROOT });
    const bare = await core.create("c2", { profiles: [] });
    assert.deepEqual(bare.profiles, []);
    assert.deepEqual(profiles.expand(bare).devices, {});
    assert.deepEqual(profiles.usedBy("default"), ["c1"]);
  }));

Deno.test("a driver is told the expanded config: a profile's limits reach create and start", () =>
  withCore(async (core) => {
    const { profiles } = core.instances;
    profiles.create({
      name: "small",
      description: "",
      config: { "limits.memory": "64MiB", "environment.FROM": "profile" },
      devices: {},
    });
    await core.createRunning("c1", { profiles: ["default", "small"] });
    const spec = core.instances.spec(core.instances.get("c1"));
    assert.equal(spec.config["limits.memory"], "64MiB");
    assert.deepEqual(spec.devices, { root: ROOT });
    // The record keeps only the instance's own keys.
    assert.equal(core.instances.get("c1").config["limits.memory"], undefined);
  }));

Deno.test("create refuses an unknown profile, one listed twice, and a profile key that does not fit", () =>
  withCore((core) => {
    const { profiles } = core.instances;
    assert.throws(() => core.instances.prepareCreate(reqOf("c1", ["nope"])), NotFound);
    assert.throws(
      () => core.instances.prepareCreate(reqOf("c1", ["default", "default"])),
      BadRequest,
    );
    profiles.create({
      name: "procs",
      description: "",
      config: { "limits.processes": "100" },
      devices: {},
    });
    // limits.processes is a container key: a VM cannot stack the profile.
    assert.throws(
      () =>
        core.instances.prepareCreate({
          ...reqOf("v1", ["procs"]),
          type: "virtual-machine",
          image: "vm",
        }),
      (err: Error) => err instanceof BadRequest && /limits\.processes/.test(err.message),
    );
    assert.deepEqual(core.store.listInstances(), []);
    return Promise.resolve();
  }));

function reqOf(name: string, profiles: string[]) {
  return {
    name,
    type: "container" as const,
    image: "busybox",
    config: {},
    devices: {},
    profiles,
    description: "",
    ephemeral: false,
  };
}

Deno.test("profile create and update check names, keys and devices, and say what is wrong", () =>
  withCore((core) => {
    const { profiles } = core.instances;
    const base = { description: "", config: {}, devices: {} };
    for (const name of ["", "a/b", "..", "a b", "x".repeat(64)]) {
      assert.throws(() => profiles.create({ ...base, name }), BadRequest, name);
    }
    assert.throws(() => profiles.create({ ...base, name: "default" }), Conflict);
    assert.throws(
      () => profiles.create({ ...base, name: "p", config: { "limits.memory": "lots" } }),
      (err: Error) => err instanceof BadRequest && /limits\.memory/.test(err.message),
    );
    assert.throws(
      () => profiles.create({ ...base, name: "p", config: { "volatile.uuid": "x" } }),
      BadRequest,
    );
    assert.throws(
      () => profiles.create({ ...base, name: "p", devices: { px: { type: "usb" } } }),
      (err: Error) => err instanceof BadRequest && /not supported yet/.test(err.message),
    );
    assert.throws(
      () =>
        profiles.create({ ...base, name: "p", devices: { eth0: { type: "nic", network: "x" } } }),
      (err: Error) => err instanceof BadRequest && /network "x" does not exist/.test(err.message),
    );
    assert.throws(
      () => profiles.create({ ...base, name: "p", devices: { r: { ...ROOT, pool: "other" } } }),
      (err: Error) => err instanceof BadRequest && /pool "other" does not exist/.test(err.message),
    );
    assert.throws(
      () => profiles.create({ ...base, name: "p", devices: { r: { type: "disk", path: "/srv" } } }),
      BadRequest,
    );
    assert.throws(
      () => profiles.create({ ...base, name: "p", devices: { r: { ...ROOT, size: "1GiB" } } }),
      (err: Error) => err instanceof BadRequest && /unknown key "size"/.test(err.message),
    );
    assert.deepEqual(profiles.list().map((p) => p.name), ["default"]);
    return Promise.resolve();
  }));

Deno.test("editing a profile applies its live keys to running instances and re-checks each user", () =>
  withCore(async (core) => {
    const { profiles } = core.instances;
    profiles.create({
      name: "lim",
      description: "",
      config: { "limits.memory": "64MiB" },
      devices: {},
    });
    await core.createRunning("c1", { profiles: ["default", "lim"] });
    await core.create("v1", { type: "virtual-machine", profiles: ["lim"] });
    await profiles.patch("lim", { config: { "limits.memory": "128MiB" } });
    assert.deepEqual(core.driver.called("applyLimits").map((c) => c.args[0]), [["limits.memory"]]);
    assert.equal(core.driver.storage.get("c1")!.limits["limits.memory"], "128MiB");
    // The stopped VM is not touched; it takes the new value at its next start.
    assert.deepEqual(core.vmDriver.called("applyLimits"), []);
    // A key the VM cannot take is refused for the whole profile, naming the instance.
    await assert.rejects(
      profiles.patch("lim", { config: { "limits.processes": "10" } }),
      (err: Error) => err instanceof BadRequest && /instance "v1"/.test(err.message),
    );
    assert.deepEqual(profiles.get("lim").config, { "limits.memory": "128MiB" });
    // If-Match: a stale ETag is refused.
    await assert.rejects(
      profiles.update("lim", { description: "x", config: {}, devices: {} }, '"stale"'),
      PreconditionFailed,
    );
    const tag = profiles.etag(profiles.get("lim"));
    await profiles.update("lim", { description: "x", config: {}, devices: {} }, `"${tag}"`);
    assert.equal(profiles.get("lim").description, "x");
  }));

Deno.test("a profile in use or the default one cannot be deleted; a rename follows into instances", () =>
  withCore(async (core) => {
    const { profiles } = core.instances;
    profiles.create({ name: "p1", description: "", config: {}, devices: {} });
    await core.create("c1", { profiles: ["default", "p1"] });
    assert.throws(
      () => profiles.delete("p1"),
      (err: Error) => err instanceof Conflict && /"c1"/.test(err.message),
    );
    assert.throws(() => profiles.delete("default"), Conflict);
    assert.throws(() => profiles.rename("default", "x"), Conflict);
    assert.throws(() => profiles.rename("p1", "default"), Conflict);
    assert.throws(() => profiles.delete("nope"), NotFound);
    profiles.rename("p1", "p2");
    assert.deepEqual(core.instances.get("c1").profiles, ["default", "p2"]);
    assert.deepEqual(profiles.usedBy("p2"), ["c1"]);
    assert.deepEqual(
      core.lifecycle.map((e) => e.action),
      ["profile-renamed"],
    );
    await core.instances.patch("c1", { profiles: ["default"] });
    profiles.delete("p2");
    assert.deepEqual(profiles.list().map((p) => p.name), ["default"]);
  }));
