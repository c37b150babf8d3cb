import assert from "node:assert/strict";
import { Agent } from "../agent/agent.ts";
import { allRoutes, LEGACY_FAMILIES } from "./app.ts";
import { ACCESS_LEVELS, type Route } from "./route_table.ts";

/** The routes of a real Agent on a fresh state dir, removed afterwards. */
async function routes(): Promise<Route[]> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-routes-" });
  const agent = new Agent(dir, () => {});
  try {
    await agent.init();
    return allRoutes(agent);
  } finally {
    agent.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const isLegacy = (r: Route) =>
  LEGACY_FAMILIES.some((f) => r.path === f.base || r.path.startsWith(`${f.base}/`));

Deno.test("every route declares one of the access levels: GET /, GET /1.0 and token redemption are untrusted", async () => {
  const all = await routes();
  for (const r of all) assert.ok(r.access in ACCESS_LEVELS, `${r.method} ${r.path}: ${r.access}`);
  const by = (access: string) =>
    all.filter((r) => r.access === access).map((r) => `${r.method} ${r.path}`);
  assert.deepEqual(by("untrusted"), ["GET /", "GET /1.0", "POST /1.0/certificates"]);
  assert.deepEqual(by("secret"), ["GET /1.0/operations/:id/websocket"]);
  assert.deepEqual(by("metrics"), ["GET /1.0/metrics"]);
  assert.deepEqual(by("admin"), [
    "PUT /1.0",
    "PATCH /1.0",
    "GET /1.0/certificates",
    "GET /1.0/certificates/:fingerprint",
    "PUT /1.0/certificates/:fingerprint",
    "PATCH /1.0/certificates/:fingerprint",
    "DELETE /1.0/certificates/:fingerprint",
    "POST /1.0/fleet",
    "DELETE /1.0/fleet",
    "POST /1.0/fleet/upgrade",
  ]);
});

Deno.test("no method and path is declared twice", async () => {
  const seen = new Set<string>();
  for (const r of await routes()) {
    const key = `${r.method} ${r.path}`;
    assert.ok(!seen.has(key), `${key} is declared twice`);
    seen.add(key);
  }
});

Deno.test("every instance route is served again under each legacy path, and nothing else is", async () => {
  const all = await routes();
  const own = all.filter((r) => !isLegacy(r));
  const instanceRoutes = own.filter((r) => /^\/1\.0\/instances(\/|$)/.test(r.path));
  assert.ok(instanceRoutes.length >= 20, "the instance routes are there");
  for (const family of LEGACY_FAMILIES) {
    const legacy = all.filter((r) => r.path === family.base || r.path.startsWith(`${family.base}/`))
      .map((r) => `${r.method} ${r.path.slice(family.base.length)} ${r.access}`);
    assert.deepEqual(
      legacy,
      instanceRoutes.map((r) => `${r.method} ${r.path.slice("/1.0/instances".length)} ${r.access}`),
    );
  }
});

Deno.test("docs/api.md lists every route with its access level, and no route that is gone", async () => {
  const docs = await Deno.readTextFile(new URL("../docs/api.md", import.meta.url));
  const section = docs.slice(docs.indexOf("## Endpoints"));
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const m = /^\| ([A-Z, ]+?) +\| `([^`]+)` +\| (\w+) +\|/.exec(line);
    if (!m) continue;
    for (const method of m[1].split(", ")) rows.set(`${method} ${m[2]}`, m[3]);
  }
  const declared = new Map(
    (await routes()).filter((r) => !isLegacy(r)).map((
      r,
    ) => [`${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`, r.access]),
  );
  assert.deepEqual(Object.fromEntries(rows), Object.fromEntries(declared));
});
