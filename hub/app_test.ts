/** The hub's API through `app.request()`: who may call what, and clear refusals. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeJoinToken } from "../contract/fleet.ts";
import type { Caller, Connection } from "../server/connection.ts";
import { ensureServerCert, runCommand } from "../server/server_cert.ts";
import { createHubApp } from "./app.ts";
import { Fleet } from "./fleet.ts";
import { SqliteDb } from "./sql.ts";
import { SqlHubStore } from "./store.ts";

async function withHub(
  fn: (
    call: (caller: Caller, path: string, init?: RequestInit) => Promise<Response>,
  ) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-hubapp-" });
  const store = await SqlHubStore.open(new SqliteDb(join(dir, "hub.db")));
  try {
    const cert = await ensureServerCert(runCommand, dir, { hostname: "hub", user: "root" });
    const fleet = new Fleet({
      store,
      id: "https://hub:8443",
      urls: ["https://hub:8443"],
      certificate: cert.certificate,
      heartbeatSeconds: 1,
      log: () => {},
    });
    const app = createHubApp({ fleet, log: () => {} });
    await fn((caller, path, init) => {
      const connection: Connection = {
        caller,
        upgradeWebSocket: () => {
          throw new Error("no upgrades here");
        },
      };
      return Promise.resolve(app.request(path, init, { connection }));
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const UNIX: Caller = { via: "unix" };
const STRANGER: Caller = { via: "https", address: "192.0.2.7" };
const json = (body: unknown): RequestInit => ({
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(body),
});

Deno.test("an untrusted caller sees the hub's info and nothing of the fleet", () =>
  withHub(async (call) => {
    const info = await (await call(STRANGER, "/fleet/v1")).json();
    assert.equal(info.metadata.auth, "untrusted");
    assert.equal((await (await call(STRANGER, "/1.0")).json()).metadata.auth, "untrusted");
    for (
      const [path, init] of [
        ["/fleet/v1/hosts", undefined],
        ["/fleet/v1/hosts/edge-1", undefined],
        ["/fleet/v1/hosts/edge-1/1.0/instances", undefined],
        ["/fleet/v1/hosts/edge-1/events", undefined],
        ["/fleet/v1/tokens", undefined],
        ["/fleet/v1/tokens", json({})],
        ["/fleet/v1/clients", json({ name: "x" })],
        ["/fleet/v1/metrics", undefined],
        ["/fleet/v1/upgrade", json({})],
        ["/fleet/v1/dashboard", json({})],
        ["/fleet/v1/tunnel", undefined],
        ["/dashboard", undefined],
        ["/dashboard/hosts", undefined],
      ] as [string, RequestInit | undefined][]
    ) {
      const resp = await call(STRANGER, path, init);
      assert.equal(resp.status, 403, `${init?.method ?? "GET"} ${path}`);
      assert.equal((await resp.json()).type, "error");
    }
    // Without an agent program, the install script is a clear 503.
    assert.equal((await call(STRANGER, "/install.sh")).status, 503);
  }));

Deno.test("a join token enrolls a certificate once; the host may open its tunnel, not administer", () =>
  withHub(async (call) => {
    const created = await call(UNIX, "/fleet/v1/tokens", json({ labels: { site: "x" } }));
    assert.equal(created.status, 201);
    const { token } = (await created.json()).metadata;
    const { secret } = decodeJoinToken(token);
    const host: Caller = {
      via: "https",
      address: "192.0.2.8",
      certificate: new Uint8Array([1, 2, 3]),
    };
    const enroll = { secret, name: "edge-1", version: "0.1.0" };
    assert.equal((await call({ ...STRANGER }, "/fleet/v1/enroll", json(enroll))).status, 403);
    const ok = await call(host, "/fleet/v1/enroll", json(enroll));
    assert.equal(ok.status, 200);
    assert.deepEqual((await ok.json()).metadata, { name: "edge-1", labels: { site: "x" } });
    const again = await call(
      { ...host, certificate: new Uint8Array([4]) },
      "/fleet/v1/enroll",
      json(enroll),
    );
    assert.equal(again.status, 403);
    assert.match((await again.json()).error, /invalid, expired, revoked or used up/);

    assert.equal((await (await call(host, "/fleet/v1")).json()).metadata.auth, "host");
    assert.equal((await call(host, "/fleet/v1/hosts")).status, 403);
    const tunnel = await call(host, "/fleet/v1/tunnel");
    assert.equal(tunnel.status, 400);
    assert.match((await tunnel.json()).error, /websocket/);

    // The host is enrolled but has no tunnel: offline, never relayed to.
    const hosts = (await (await call(UNIX, "/fleet/v1/hosts")).json()).metadata;
    assert.deepEqual(hosts.map((h: { name: string; status: string }) => [h.name, h.status]), [
      ["edge-1", "offline"],
    ]);
    const relay = await call(UNIX, "/fleet/v1/hosts/edge-1/1.0/instances");
    assert.equal(relay.status, 409);
    assert.match((await relay.json()).error, /offline/);
    assert.equal((await call(UNIX, "/fleet/v1/hosts/edge-1/fleet/v1")).status, 400);
    assert.equal((await call(UNIX, "/fleet/v1/hosts/nope/1.0")).status, 404);
  }));

Deno.test("malformed token requests are 400s that name the field", () =>
  withHub(async (call) => {
    const bad = async (body: unknown, re: RegExp) => {
      const resp = await call(UNIX, "/fleet/v1/tokens", json(body));
      assert.equal(resp.status, 400, JSON.stringify(body));
      assert.match((await resp.json()).error, re);
    };
    await bad({ expires: "soon" }, /Invalid expiry "soon"/);
    await bad({ uses: 0 }, /uses/);
    await bad({ labels: { "bad key": "x" } }, /labels/);
    await bad({ what: 1 }, /Unknown field "what"/);
    const labels = await call(UNIX, "/fleet/v1/hosts?label=novalue");
    assert.equal(labels.status, 400);
  }));

Deno.test("an address refused 30 times in a minute is held off with a 429; loopback never is", () =>
  withHub(async (call) => {
    for (let i = 0; i < 30; i++) {
      assert.equal((await call(STRANGER, "/fleet/v1/hosts")).status, 403);
    }
    const held = await call(STRANGER, "/fleet/v1");
    assert.equal(held.status, 429);
    assert.match((await held.json()).error, /Too many refused requests from 192\.0\.2\.7/);
    const local: Caller = { via: "https", address: "127.0.0.1" };
    for (let i = 0; i < 40; i++) assert.equal((await call(local, "/fleet/v1/hosts")).status, 403);
    assert.equal((await call(local, "/fleet/v1")).status, 200);
  }));
