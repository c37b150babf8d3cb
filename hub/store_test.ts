/** The hub's store: tokens spent once (or N times), expired or revoked tokens refused, hosts kept. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SqlHubStore, type TokenRecord } from "./store.ts";
import { PostgresDb, SqliteDb } from "./sql.ts";
import { HAS_POSTGRES, startPostgres } from "../tests/postgres.ts";

/** Runs `fn` on a fresh store on SQLite, and on PostgreSQL where it is installed. */
async function withStore(fn: (store: SqlHubStore) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-hubstore-" });
  const sqlite = await SqlHubStore.open(new SqliteDb(join(dir, "hub.db")));
  try {
    await fn(sqlite);
  } finally {
    await sqlite.close();
    await Deno.remove(dir, { recursive: true });
  }
  if (!HAS_POSTGRES) return;
  const pg = await startPostgres();
  try {
    const store = await SqlHubStore.open(await PostgresDb.connect(pg.url, () => {}));
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    await pg.stop();
  }
}

const token = (over: Partial<TokenRecord> = {}): TokenRecord => ({
  id: "t1",
  hash: "h1",
  description: "",
  labels: { site: "paris" },
  uses_left: 1,
  expires_at: "",
  created_at: "2026-01-01T00:00:00.000Z",
  ...over,
});

const host = (name: string, fingerprint = `fp-${name}`) => ({
  name,
  fingerprint,
  certificate: "PEM",
});

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test(
  "a single-use token enrolls one host; a second use is refused",
  opts,
  () =>
    withStore(async (store) => {
      await store.putToken(token());
      const now = "2026-06-01T00:00:00.000Z";
      assert.deepEqual(await store.enroll("h1", now, host("edge-1")), {
        ok: true,
        labels: { site: "paris" },
      });
      assert.deepEqual(await store.enroll("h1", now, host("edge-2")), { ok: false, why: "token" });
      const h = await store.getHost("edge-1");
      assert.equal(h?.labels.site, "paris");
      assert.equal(h?.hub, "");
      assert.equal(await store.getHost("edge-2"), undefined);
      assert.equal(await store.pruneTokens(now), 1);
    }),
);

Deno.test(
  "an expired or revoked token is refused; a name taken by another host is a conflict",
  opts,
  () =>
    withStore(async (store) => {
      await store.putToken(token({ uses_left: 5, expires_at: "2026-06-01T00:00:00.000Z" }));
      assert.equal((await store.enroll("h1", "2026-06-01T00:00:01.000Z", host("a"))).ok, false);
      assert.equal((await store.enroll("h1", "2026-05-31T00:00:00.000Z", host("a"))).ok, true);
      const taken = await store.enroll("h1", "2026-05-31T00:00:00.000Z", host("a", "other"));
      assert.deepEqual(taken, { ok: false, why: "name" });
      // The same host enrolling again keeps one record (and the use is spent).
      assert.equal(
        (await store.enroll("h1", "2026-05-31T00:00:00.000Z", host("b", "fp-a"))).ok,
        true,
      );
      assert.deepEqual((await store.listHosts()).map((h) => h.name), ["b"]);
      assert.equal((await store.listTokens())[0].uses_left, 3);
      assert.ok(await store.deleteToken("t1"));
      assert.equal((await store.enroll("h1", "2026-05-31T00:00:00.000Z", host("c"))).ok, false);
    }),
);

Deno.test(
  "a host's events are kept newest-last and bounded; they go with the host",
  opts,
  () =>
    withStore(async (store) => {
      await store.putToken(token());
      await store.enroll("h1", "2026-01-01T00:00:00.000Z", host("edge-1"));
      const events = Array.from({ length: 30 }, (_, i) => ({
        timestamp: `t${i}`,
        type: "lifecycle",
        event: { n: i },
      }));
      await store.addEvents("edge-1", events.slice(0, 20), 25);
      await store.addEvents("edge-1", events.slice(20), 25);
      const kept = await store.listEvents("edge-1");
      assert.equal(kept.length, 25);
      assert.deepEqual(kept.at(-1)?.event, { n: 29 });
      assert.deepEqual(kept[0].event, { n: 5 });
      assert.ok(await store.deleteHost("edge-1"));
      assert.deepEqual(await store.listEvents("edge-1"), []);
    }),
);

Deno.test(
  "the first hub's certificate is the one every hub on the database presents",
  opts,
  () =>
    withStore(async (store) => {
      const a = { certificate: "CERT-A", key: "KEY-A" };
      assert.deepEqual(await store.claimIdentity(a), a);
      assert.deepEqual(await store.claimIdentity({ certificate: "CERT-B", key: "KEY-B" }), a);
    }),
);
