import assert from "node:assert/strict";
import type { Hono } from "hono";
import { Agent } from "../agent/agent.ts";
import { createApp } from "./app.ts";
import { INCUS6_RENAME } from "../tests/client_bodies.ts";

interface Envelope {
  type: "sync" | "async" | "error";
  status: string;
  status_code: number;
  operation: string;
  error_code: number;
  error: string;
  metadata: unknown;
}

/** Runs `fn` against the app of a real Agent on a fresh state dir, removed afterwards. */
async function withApp(fn: (app: Hono, agent: Agent) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-api-" });
  let agent: Agent | undefined;
  try {
    agent = new Agent(dir, () => {});
    await agent.init();
    await fn(createApp(agent), agent);
  } finally {
    agent?.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Sends a request; a non-string `body` is sent as JSON. */
async function call(
  app: Hono,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Envelope }> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const res = await app.request(path, init);
  return { status: res.status, body: await res.json() };
}

/** Asserts an Incus error envelope with `code` whose message contains every part. */
function assertError(
  res: { status: number; body: Envelope },
  code: number,
  ...parts: string[]
): void {
  assert.equal(res.status, code, `status of ${JSON.stringify(res.body)}`);
  assert.equal(res.body.type, "error");
  assert.equal(res.body.error_code, code);
  assert.equal(res.body.metadata, null);
  for (const part of parts) {
    assert.ok(res.body.error.includes(part), `"${res.body.error}" should contain "${part}"`);
  }
}

const source = { type: "image", alias: "busybox" };

Deno.test("GET /1.0 answers the server info in a sync envelope", () =>
  withApp(async (app) => {
    const res = await call(app, "GET", "/1.0");
    assert.equal(res.status, 200);
    assert.equal(res.body.type, "sync");
    assert.equal(res.body.status, "Success");
    assert.equal(res.body.status_code, 200);
    assert.equal(res.body.error_code, 0);
    const meta = res.body.metadata as {
      api_version: string;
      api_extensions: unknown;
      environment: { server: string; server_version: string };
      config: Record<string, string>;
    };
    assert.equal(meta.api_version, "1.0");
    assert.equal(meta.environment.server, "outpost");
    assert.ok(Array.isArray(meta.api_extensions));
    assert.ok((meta.api_extensions as unknown[]).every((e) => typeof e === "string"));
    assert.deepEqual(meta.config, {});
  }));

Deno.test("an unknown endpoint is a 404 error envelope", () =>
  withApp(async (app) => {
    assertError(await call(app, "GET", "/1.0/nonsense"), 404);
    assertError(await call(app, "GET", "/2.0"), 404);
  }));

Deno.test("GET /1.0/instances is an empty list on a new daemon", () =>
  withApp(async (app) => {
    const res = await call(app, "GET", "/1.0/instances");
    assert.equal(res.status, 200);
    assert.equal(res.body.type, "sync");
    assert.deepEqual(res.body.metadata, []);
  }));

Deno.test("GET /1.0/instances/{name} of a missing instance is a 404 naming it", () =>
  withApp(async (app) => {
    assertError(await call(app, "GET", "/1.0/instances/nope"), 404, '"nope"', "not found");
  }));

Deno.test("POST /1.0/instances refuses a body that is not JSON", () =>
  withApp(async (app) => {
    assertError(await call(app, "POST", "/1.0/instances", "{not json"), 400, "Invalid JSON");
    assertError(await call(app, "POST", "/1.0/instances", "[1]"), 400, "JSON object");
  }));

Deno.test("POST /1.0/instances refuses an unknown field, naming it, and unsupported source types", () =>
  withApp(async (app) => {
    assertError(
      await call(app, "POST", "/1.0/instances", { name: "c1", source, colour: "red" }),
      400,
      '"colour"',
    );
    // `source` takes the many fields migration sources carry; their types are refused by name.
    assertError(
      await call(app, "POST", "/1.0/instances", {
        name: "c1",
        source: { type: "migration", mode: "pull", operation: "x", "base-image": "x", live: false },
      }),
      400,
      'source type "migration" is not supported yet',
    );
    assertError(
      await call(app, "POST", "/1.0/instances", {
        name: "c1",
        source: { type: "copy", source: "c0", refresh: true },
      }),
      400,
      "Refreshing a copy is not supported yet",
    );
    // A copy from another server is refused, saying so.
    assertError(
      await call(app, "POST", "/1.0/instances", {
        name: "c1",
        source: { type: "copy", source: "c0", server: "https://elsewhere:8443" },
      }),
      400,
      "another server",
    );
  }));

Deno.test("POST /1.0/instances refuses an invalid instance name, naming it", () =>
  withApp(async (app) => {
    assertError(
      await call(app, "POST", "/1.0/instances", { name: "1-bad_name", source }),
      400,
      '"1-bad_name"',
    );
    assertError(await call(app, "POST", "/1.0/instances", { source }), 400, "name");
  }));

Deno.test("POST /1.0/instances refuses an unknown config key, naming it", () =>
  withApp(async (app) => {
    assertError(
      await call(app, "POST", "/1.0/instances", { name: "c1", source, config: { "x": "1" } }),
      400,
      'Unknown config key "x"',
    );
    assertError(
      await call(app, "POST", "/1.0/instances", {
        name: "c1",
        source,
        config: { "limits.memory": "lots" },
      }),
      400,
      '"limits.memory"',
    );
  }));

Deno.test("POST /1.0/instances from a missing image is a 404 naming the image", () =>
  withApp(async (app, agent) => {
    assertError(
      await call(app, "POST", "/1.0/instances", { name: "c1", source }),
      404,
      '"busybox"',
    );
    assertError(
      await call(app, "POST", "/1.0/instances", {
        name: "c1",
        source: { type: "image", fingerprint: "abc123" },
      }),
      404,
      '"abc123"',
    );
    // Nothing was created and no operation started.
    assert.deepEqual(agent.instances.list(), []);
    assert.deepEqual(agent.operations.list(), []);
  }));

Deno.test("PUT /1.0/instances/{name}/state refuses an unknown action", () =>
  withApp(async (app) => {
    assertError(
      await call(app, "PUT", "/1.0/instances/c1/state", { action: "dance" }),
      400,
      "action must be one of",
    );
  }));

Deno.test("GET /1.0/operations/{id} of an unknown id is a 404", () =>
  withApp(async (app) => {
    assertError(await call(app, "GET", "/1.0/operations/unknown"), 404, '"unknown"');
    assertError(await call(app, "GET", "/1.0/operations/unknown/wait?timeout=0"), 404);
    assertError(await call(app, "DELETE", "/1.0/operations/unknown"), 404);
  }));

Deno.test("GET /1.0/images is an empty list on a new daemon", () =>
  withApp(async (app) => {
    const res = await call(app, "GET", "/1.0/images");
    assert.equal(res.status, 200);
    assert.equal(res.body.type, "sync");
    assert.deepEqual(res.body.metadata, []);
    assert.deepEqual((await call(app, "GET", "/1.0/images?recursion=1")).body.metadata, []);
    assert.deepEqual((await call(app, "GET", "/1.0/images/aliases")).body.metadata, []);
  }));

Deno.test("POST /1.0/images/aliases to a missing image is a 404", () =>
  withApp(async (app, agent) => {
    assertError(
      await call(app, "POST", "/1.0/images/aliases", { name: "web", target: "deadbeef" }),
      404,
      '"deadbeef"',
    );
    assert.deepEqual(agent.images.listAliases(), []);
  }));

Deno.test("GET /1.0/images/{fp} of a missing image is a 404", () =>
  withApp(async (app) => {
    assertError(await call(app, "GET", "/1.0/images/deadbeef"), 404, '"deadbeef"');
    assertError(await call(app, "GET", "/1.0/images/aliases/nope"), 404, '"nope"');
  }));

Deno.test("GET /1.0/images/{fp}/export streams the image's file with its length; HEAD only the length", () =>
  withApp(async (app, agent) => {
    const bytes = Uint8Array.from({ length: 200_000 }, (_, i) => i * 7 % 251);
    const fingerprint = "c".repeat(64);
    agent.store.putImage({
      fingerprint,
      type: "container",
      architecture: "x86_64",
      filename: "tiny.tar.gz",
      size: bytes.length,
      properties: {},
      public: false,
      created_at: "2024-01-01T00:00:00.000Z",
      uploaded_at: "2024-01-01T00:00:00.000Z",
      last_used_at: "1970-01-01T00:00:00Z",
    });
    await Deno.writeFile(agent.images.file(fingerprint), bytes);
    const res = await app.request(`/1.0/images/${fingerprint.slice(0, 8)}/export`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), String(bytes.length));
    assert.equal(res.headers.get("content-disposition"), "attachment; filename=tiny.tar.gz");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
    // Hono answers HEAD with the GET handler and drops its body: no file may stay open for it
    // (counted over 20 requests, so the daemon's own comings and goings do not count).
    const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
    const before = fds();
    for (let i = 0; i < 20; i++) {
      const head = await app.request(`/1.0/images/${fingerprint}/export`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(bytes.length));
      assert.equal(head.body, null);
    }
    assert.ok(fds() - before < 10, `HEAD left files open: ${fds() - before} more fds`);
    assertError(await call(app, "GET", `/1.0/images/${"d".repeat(64)}/export`), 404);
  }));

Deno.test("PUT /1.0 refuses an unknown server key, naming it", () =>
  withApp(async (app) => {
    assertError(
      await call(app, "PUT", "/1.0", { config: { "core.bogus": "1" } }),
      400,
      '"core.bogus"',
    );
    const ok = await call(app, "PATCH", "/1.0", { config: { "user.owner": "ops" } });
    assert.equal(ok.status, 200);
    const info = await call(app, "GET", "/1.0");
    assert.deepEqual((info.body.metadata as { config: unknown }).config, { "user.owner": "ops" });
  }));

Deno.test("bodies that are too large, not UTF-8, nested too deeply or not objects are 4xx", async () => {
  await withApp(async (app) => {
    const post = async (body: BodyInit) => {
      const r = await app.request("/1.0/instances", {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      return { status: r.status, body: await r.json() };
    };
    assertError(await post(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), 400, "UTF-8");
    assertError(await post(`{"name":"${"a".repeat(5 * 2 ** 20)}"}`), 413, "too large");
    assertError(await post("[".repeat(200_000) + "]".repeat(200_000)), 400, "JSON");
    assertError(await post("null"), 400, "JSON object");
    assertError(await post('{"name":'), 400, "Invalid JSON");
  });
});

Deno.test("a PUT with no body or an unknown field changes nothing (400)", async () => {
  await withApp(async (app) => {
    // No instance exists: the body is refused before the name is even looked up.
    assertError(await call(app, "PUT", "/1.0/instances/c1", ""), 400, "Missing request body");
    assertError(await call(app, "PUT", "/1.0/instances/c1", { bogus: 1 }), 400, '"bogus"');
    assertError(await call(app, "PUT", "/1.0/instances/c1", { migration: {} }), 400, "migration");
    assertError(await call(app, "PATCH", "/1.0/instances/c1", { bogus: 1 }), 400, '"bogus"');
    assertError(await call(app, "PUT", "/1.0", { config: {}, extra: true }), 400, '"extra"');
  });
});

Deno.test("malformed query values and percent-encoding are 400s", async () => {
  await withApp(async (app) => {
    assertError(await call(app, "GET", "/1.0/instances?recursion=abc"), 400, "recursion");
    assertError(await call(app, "GET", "/1.0/instances?recursion=1e3"), 400, "recursion");
    const res = await call(app, "GET", "/1.0/instances?filter=%E0%A4%A");
    assert.ok(res.status < 500, `status ${res.status}`);
  });
});

Deno.test("a byte order mark, a lone surrogate or a NUL anywhere in a body is a 400", async () => {
  await withApp(async (app) => {
    const post = async (body: BodyInit) => {
      const r = await app.request("/1.0/images/aliases", { method: "POST", body });
      return { status: r.status, body: await r.json() };
    };
    assertError(await post(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), 400, "JSON");
    assertError(await post('{"name":"a\\ud800","target":"x"}'), 400, "lone surrogate");
    assertError(await post('{"name":"a","target":"x","description":"a\\u0000"}'), 400, "NUL");
    assertError(await post('{"name":"a","target":"x","k\\u0000":1}'), 400, "field name");
    // A PUT needs the config it replaces with (or a snapshot to restore).
    assertError(await call(app, "PUT", "/1.0/instances/c1", {}), 400, "whole instance");
  });
});

/** Stores an instance record as the core would (no driver runs). */
function putRecord(agent: Agent, name: string, type: "container" | "virtual-machine") {
  agent.store.putInstance({
    name,
    type,
    architecture: "x86_64",
    description: "",
    config: {},
    devices: {},
    profiles: [],
    ephemeral: false,
    created_at: "2024-01-01T00:00:00Z",
    last_used_at: "1970-01-01T00:00:00Z",
  });
}

Deno.test("LXD's legacy /1.0/containers and /1.0/virtual-machines list their type, in their own URLs", () =>
  withApp(async (app, agent) => {
    putRecord(agent, "c1", "container");
    putRecord(agent, "v1", "virtual-machine");
    const list = async (path: string) => (await call(app, "GET", path)).body.metadata;
    assert.deepEqual(await list("/1.0/containers"), ["/1.0/containers/c1"]);
    assert.deepEqual(await list("/1.0/virtual-machines"), ["/1.0/virtual-machines/v1"]);
    assert.deepEqual(await list("/1.0/instances"), ["/1.0/instances/c1", "/1.0/instances/v1"]);
    assert.deepEqual(
      await list("/1.0/containers?filter=name+eq+c1"),
      ["/1.0/containers/c1"],
    );
  }));

Deno.test("a legacy path does not find an instance of the other type, and says where it is", () =>
  withApp(async (app, agent) => {
    putRecord(agent, "v1", "virtual-machine");
    assertError(await call(app, "GET", "/1.0/containers/v1"), 404, "/1.0/instances/v1");
    assertError(await call(app, "DELETE", "/1.0/containers/v1"), 404, "virtual-machine");
    assertError(
      await call(app, "PUT", "/1.0/containers/v1/state", { action: "start" }),
      404,
      "/1.0/instances/v1",
    );
    assertError(await call(app, "GET", "/1.0/containers/nope/state"), 404, '"nope"');
    assertError(await call(app, "GET", "/1.0/virtual-machines/nope"), 404, '"nope"');
    assert.deepEqual(agent.instances.list().map((i) => i.name), ["v1"]);
    assert.deepEqual(agent.operations.list(), []);
  }));

Deno.test("the legacy paths check bodies as /1.0/instances does", () =>
  withApp(async (app, agent) => {
    putRecord(agent, "c1", "container");
    assertError(
      await call(app, "POST", "/1.0/containers", { name: "c1", source, colour: "red" }),
      400,
      '"colour"',
    );
    assertError(await call(app, "POST", "/1.0/containers", { name: "c2", source }), 404, "busybox");
    assertError(await call(app, "PUT", "/1.0/containers/c1/state", { action: "dance" }), 400);
  }));

Deno.test("a move is refused, naming what is not supported; the rename fields alone are not", () =>
  withApp(async (app) => {
    const rename = (body: unknown) => call(app, "POST", "/1.0/instances/c1", body);
    assertError(await rename({ name: "c2", migration: true }), 400, "between servers");
    assertError(await rename({ name: "c2", live: true }), 400, "Live migration");
    assertError(await rename({ name: "c2", pool: "fast" }), 400, "storage pools");
    assertError(await rename({ name: "c2", project: "p1" }), 400, "project");
    assertError(await rename({ name: "c2", Config: { "user.a": "1" } }), 400, "Config overrides");
    assertError(await rename({ name: "c2", target: { operation: "x" } }), 400, "between servers");
    assertError(await rename({ name: "c2", colour: "red" }), 400, '"colour"');
    // The Incus 6 client's whole rename body parses: the instance is what is missing.
    assertError(await rename(INCUS6_RENAME), 404, '"c1"');
    assertError(await rename({ ...INCUS6_RENAME, project: "default" }), 404, '"c1"');
  }));

Deno.test("stateful stop/start is refused as not supported", () =>
  withApp(async (app) => {
    assertError(
      await call(app, "PUT", "/1.0/instances/c1/state", { action: "stop", stateful: true }),
      400,
      "Stateful stop/start is not supported",
    );
  }));

Deno.test("a JSON POST /1.0/images is checked, then refused by what it asks", () =>
  withApp(async (app) => {
    const post = (body: unknown) => call(app, "POST", "/1.0/images", body);
    // Publishing: the instance must exist, and aliases be valid names.
    assertError(
      await post({ source: { type: "instance", name: "c1" }, public: false, aliases: [] }),
      404,
      'Instance "c1" not found',
    );
    assertError(await post({ source: { type: "instance" } }), 400, "source.name");
    assertError(
      await post({ source: { type: "url", url: "https://example.com/x" } }),
      400,
      "from a server or a URL",
    );
    assertError(await post({ filename: "x.tar.gz" }), 400, "Only image file uploads");
    assertError(await post({ source: { type: "image" }, colour: 1 }), 400, '"colour"');
    assertError(await post({ source: { type: "image", colour: 1 } }), 400, '"source.colour"');
  }));
