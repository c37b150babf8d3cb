import assert from "node:assert/strict";
import {
  StoragePoolResourcesSchema,
  StoragePoolSchema,
  StorageVolumeSchema,
} from "../../contract/responses.ts";
import { call, refused, withApp } from "../../tests/app_fixture.ts";

Deno.test("GET /1.0/storage-pools shows the default dir pool, what uses it, and its space", () =>
  withApp(async (app, _agent, core) => {
    await core.create("c1");
    assert.deepEqual((await call(app, "GET", "/1.0/storage-pools")).body.metadata, [
      "/1.0/storage-pools/default",
    ]);
    const [pool] = (await call(app, "GET", "/1.0/storage-pools?recursion=1")).body.metadata;
    const p = StoragePoolSchema.parse(pool);
    assert.equal(p.driver, "dir");
    assert.equal(p.config.source, core.paths.root);
    assert.ok(p.used_by.includes("/1.0/profiles/default"));
    assert.ok(p.used_by.includes("/1.0/instances/c1"));
    const r = StoragePoolResourcesSchema.parse(
      (await call(app, "GET", "/1.0/storage-pools/default/resources")).body.metadata,
    );
    assert.ok(r.space.total > 0 && r.space.used > 0 && r.space.used <= r.space.total);
  }));

Deno.test("a pool's volumes are its instances and images; unknown ones are 404", () =>
  withApp(async (app, _agent, core) => {
    await core.create("c1");
    const urls = (await call(app, "GET", "/1.0/storage-pools/default/volumes")).body.metadata;
    assert.ok(urls.includes("/1.0/storage-pools/default/volumes/container/c1"), urls);
    assert.ok(urls.some((u: string) => u.includes("/volumes/image/")), urls);
    const v = StorageVolumeSchema.parse(
      (await call(app, "GET", "/1.0/storage-pools/default/volumes/container/c1")).body.metadata,
    );
    assert.deepEqual([v.name, v.type, v.content_type], ["c1", "container", "filesystem"]);
    assert.deepEqual(v.used_by, ["/1.0/instances/c1"]);
    assert.match(await refused(app, "GET", "/1.0/storage-pools/fast", undefined, 404), /"fast"/);
    assert.match(
      await refused(app, "GET", "/1.0/storage-pools/default/volumes/custom/x", undefined, 404),
      /"custom\/x" not found/,
    );
  }));
