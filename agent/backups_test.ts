import assert from "node:assert/strict";
import { join } from "node:path";
import { Runner } from "../drivers/runner.ts";
import { withCore } from "../tests/core_fixture.ts";
import { BackupManager } from "./backups.ts";
import { NEVER } from "./snapshots.ts";

Deno.test("pruneExpired() deletes the backups whose expiry passed, and only those", () =>
  withCore(async (core) => {
    await core.create("c1");
    const m = new BackupManager({
      store: core.store,
      instances: core.instances,
      drivers: core.drivers,
      events: core.events,
      runner: new Runner(),
      dir: (name) => core.paths.backups(name),
    });
    const dir = core.paths.backups("c1");
    await Deno.mkdir(dir, { recursive: true });
    for (
      const [name, expires_at] of [
        ["old", "2020-01-01T00:00:00Z"],
        ["new", "2100-01-01T00:00:00Z"],
        ["kept", NEVER],
      ]
    ) {
      await Deno.writeTextFile(
        join(dir, `${name}.json`),
        JSON.stringify({
          name,
          created_at: "2019-01-01T00:00:00Z",
          expires_at,
          instance_only: false,
        }),
      );
      await Deno.writeTextFile(join(dir, `${name}.tar.gz`), "x");
    }
    assert.deepEqual(await m.pruneExpired(new Date("2030-01-01T00:00:00Z")), ["c1/old"]);
    assert.deepEqual((await m.list("c1")).map((b) => b.name).sort(), ["kept", "new"]);
    assert.equal(await Deno.stat(join(dir, "old.tar.gz")).catch(() => undefined), undefined);
  }));
