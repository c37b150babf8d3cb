import assert from "node:assert/strict";
import { InstanceSchema, ProfileSchema } from "../../contract/responses.ts";
import { call, refused, withApp } from "../../tests/app_fixture.ts";

Deno.test("GET /1.0/profiles lists default with the root disk; POST makes one (201, Location)", () =>
  withApp(async (app) => {
    const list = await call(app, "GET", "/1.0/profiles");
    assert.deepEqual(list.body.metadata, ["/1.0/profiles/default"]);
    const made = await call(app, "POST", "/1.0/profiles", {
      name: "web",
      description: "web servers",
      config: { "limits.memory": "64MiB" },
      devices: null,
    });
    assert.equal(made.res.status, 201, JSON.stringify(made.body));
    assert.equal(made.res.headers.get("location"), "/1.0/profiles/web");
    const full = await call(app, "GET", "/1.0/profiles?recursion=1");
    const profiles = full.body.metadata.map((p: unknown) => ProfileSchema.parse(p));
    assert.deepEqual(profiles, [
      {
        name: "default",
        description: "Default outpost profile",
        config: {},
        devices: { root: { type: "disk", path: "/", pool: "default" } },
        used_by: [],
        project: "default",
      },
      {
        name: "web",
        description: "web servers",
        config: { "limits.memory": "64MiB" },
        devices: {},
        used_by: [],
        project: "default",
      },
    ]);
  }));

Deno.test("an instance shows its profiles' keys in expanded_config and is in their used_by", () =>
  withApp(async (app, agent, core) => {
    agent.profiles.create({
      name: "web",
      description: "",
      config: { "limits.memory": "64MiB" },
      devices: {},
    });
    await core.create("c1", { profiles: ["default", "web"], config: { "limits.cpu": "1" } });
    const inst = InstanceSchema.parse((await call(app, "GET", "/1.0/instances/c1")).body.metadata);
    assert.deepEqual(inst.profiles, ["default", "web"]);
    assert.equal(inst.config["limits.memory"], undefined);
    assert.equal(inst.expanded_config["limits.memory"], "64MiB");
    assert.equal(inst.expanded_config["limits.cpu"], "1");
    assert.deepEqual(inst.expanded_devices, { root: { type: "disk", path: "/", pool: "default" } });
    const web = ProfileSchema.parse((await call(app, "GET", "/1.0/profiles/web")).body.metadata);
    assert.deepEqual(web.used_by, ["/1.0/instances/c1"]);
    // In use: not deleted (409).
    assert.match(await refused(app, "DELETE", "/1.0/profiles/web", undefined, 409), /"c1"/);
  }));

Deno.test("PUT honours If-Match, PATCH merges, POST renames, DELETE removes", () =>
  withApp(async (app) => {
    await call(app, "POST", "/1.0/profiles", { name: "p1", config: { "user.a": "1" } });
    const got = await call(app, "GET", "/1.0/profiles/p1");
    const etag = got.res.headers.get("etag")!;
    assert.ok(etag);
    const stale = await call(app, "PUT", "/1.0/profiles/p1", { config: {} }, {
      "If-Match": '"0000"',
    });
    assert.equal(stale.res.status, 412);
    // A full object sent back (as `lxc profile edit` does) is taken.
    const put = await call(app, "PUT", "/1.0/profiles/p1", {
      ...got.body.metadata,
      config: { "user.a": "2" },
    }, { "If-Match": etag });
    assert.equal(put.res.status, 200, JSON.stringify(put.body));
    await call(app, "PATCH", "/1.0/profiles/p1", { config: { "user.b": "3" } });
    const after = ProfileSchema.parse((await call(app, "GET", "/1.0/profiles/p1")).body.metadata);
    assert.deepEqual(after.config, { "user.a": "2", "user.b": "3" });
    const moved = await call(app, "POST", "/1.0/profiles/p1", { name: "p2" });
    assert.equal(moved.res.status, 201);
    assert.equal(moved.res.headers.get("location"), "/1.0/profiles/p2");
    assert.equal((await call(app, "GET", "/1.0/profiles/p1")).res.status, 404);
    assert.equal((await call(app, "DELETE", "/1.0/profiles/p2")).res.status, 200);
    assert.deepEqual((await call(app, "GET", "/1.0/profiles")).body.metadata, [
      "/1.0/profiles/default",
    ]);
  }));

Deno.test("bad profile requests get Incus errors and change nothing", () =>
  withApp(async (app) => {
    assert.match(await refused(app, "POST", "/1.0/profiles", { name: "a/b" }, 400), /profile name/);
    assert.match(await refused(app, "POST", "/1.0/profiles", {}, 400), /name/);
    assert.match(
      await refused(app, "POST", "/1.0/profiles", { name: "p", bogus: 1 }, 400),
      /bogus/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/profiles", { name: "p", config: { "nope.x": "1" } }, 400),
      /Unknown config key "nope\.x"/,
    );
    assert.match(
      await refused(
        app,
        "POST",
        "/1.0/profiles",
        { name: "p", devices: { eth0: { type: "nic", network: "br0" } } },
        400,
      ),
      /network "br0" does not exist/,
    );
    assert.match(await refused(app, "POST", "/1.0/profiles", { name: "default" }, 409), /exists/);
    assert.match(await refused(app, "DELETE", "/1.0/profiles/default", undefined, 409), /default/);
    assert.match(
      await refused(app, "POST", "/1.0/profiles/default", { name: "x" }, 409),
      /cannot be renamed/,
    );
    assert.equal((await call(app, "GET", "/1.0/profiles/nope")).res.status, 404);
    assert.match(
      await refused(app, "POST", "/1.0/instances", {
        name: "c1",
        source: { type: "image", alias: "busybox" },
        profiles: ["nope"],
      }, 404),
      /Profile "nope" not found/,
    );
    assert.deepEqual((await call(app, "GET", "/1.0/profiles")).body.metadata, [
      "/1.0/profiles/default",
    ]);
    assert.deepEqual((await call(app, "GET", "/1.0/instances")).body.metadata, []);
  }));
