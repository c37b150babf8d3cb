/** End to end through the HTTP API on the unix socket: operations, events, exec, images. */
import assert from "node:assert/strict";
import { openEvents } from "../contract/ws_client.ts";
import { busyboxTarball, TestDaemon, uniqueName } from "./helpers.ts";

interface Op {
  id: string;
  class: string;
  status: string;
  status_code: number;
  err: string;
  metadata: Record<string, unknown> | null;
  resources: Record<string, string[]>;
}

interface Event {
  type: string;
  metadata: { action?: string; source?: string; id?: string; status_code?: number };
}

/** Collects events from /1.0/events until closed. */
async function listen(
  d: TestDaemon,
  types: string,
): Promise<{ events: Event[]; close(): Promise<void> }> {
  const ws = await openEvents(d.socket, types);
  const events: Event[] = [];
  const reading = (async () => {
    for await (const msg of ws) if (msg.type === "text") events.push(JSON.parse(msg.data));
  })();
  return {
    events,
    close: async () => {
      await ws.close();
      await reading;
    },
  };
}

Deno.test("the API runs long verbs as operations and streams their events", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("bb");
    const name = uniqueName("api");
    const feed = await listen(d, "operation,lifecycle");

    // Create: 202 + Location + an operation in the envelope.
    const res = await d.api.fetch("POST", "/1.0/instances", {
      body: {
        name,
        source: { type: "image", alias: "bb" },
        config: { "environment.GREETING": "hello" },
      },
    });
    assert.equal(res.status, 202);
    const created = await res.json();
    assert.equal(created.type, "async");
    assert.equal(created.status_code, 100);
    assert.equal(res.headers.get("location"), `/1.0/operations/${created.metadata.id}`);
    assert.deepEqual(created.metadata.resources.instances, [`/1.0/instances/${name}`]);
    const op =
      (await d.api.request<Op>("GET", `/1.0/operations/${created.metadata.id}/wait?timeout=30`))
        .metadata;
    assert.equal(op.status_code, 200, op.err);

    // Start through PUT state, then read the state.
    const start = await d.api.request<Op>("PUT", `/1.0/instances/${name}/state`, {
      body: { action: "start" },
    });
    assert.equal(start.type, "async");
    await d.api.wait(start.metadata.id);
    const state = await d.api.get<
      {
        status: string;
        status_code: number;
        pid: number;
        processes: number;
        memory: { usage: number };
        cpu: { usage: number };
        network: Record<string, unknown>;
      }
    >(
      `/1.0/instances/${name}/state`,
    );
    assert.equal(state.status, "Running");
    assert.equal(state.status_code, 103);
    assert.equal(state.pid, (await d.lxcState(name)).pid);
    assert.ok(state.processes >= 1);
    assert.ok(state.memory.usage > 0);
    assert.ok(state.cpu.usage > 0);
    assert.ok("lo" in state.network);

    // Exec with record-output: the exit code in metadata.return, output in log files.
    const exec = await d.api.request<Op>("POST", `/1.0/instances/${name}/exec`, {
      body: {
        command: ["sh", "-c", 'echo "$GREETING $EXTRA"; pwd; echo oops >&2; exit 7'],
        environment: { EXTRA: "world" },
        "record-output": true,
        "wait-for-websocket": false,
      },
    });
    const done = await d.api.wait(exec.metadata.id);
    assert.equal(done.metadata?.return, 7);
    const output = done.metadata?.output as Record<string, string>;
    assert.equal(await (await d.api.fetch("GET", output["1"])).text(), "hello world\n/root\n");
    assert.equal(await (await d.api.fetch("GET", output["2"])).text(), "oops\n");

    // The instance at recursion=1 carries state; the list at recursion=2 too.
    const full = await d.api.get<{ state: { pid: number }; status: string }>(
      `/1.0/instances/${name}?recursion=1`,
    );
    assert.equal(full.status, "Running");
    assert.ok(full.state.pid > 0);
    const urls = await d.api.get<string[]>("/1.0/instances");
    assert.deepEqual(urls, [`/1.0/instances/${name}`]);

    // Stop, delete.
    const stop = await d.api.request<Op>("PUT", `/1.0/instances/${name}/state`, {
      body: { action: "stop", force: true },
    });
    await d.api.wait(stop.metadata.id);
    const del = await d.api.request<Op>("DELETE", `/1.0/instances/${name}`);
    await d.api.wait(del.metadata.id);
    await new Promise((r) => setTimeout(r, 200));
    await feed.close();

    const actions = feed.events.filter((e) => e.type === "lifecycle").map((e) => e.metadata.action);
    for (
      const a of [
        "instance-created",
        "instance-started",
        "instance-exec",
        "instance-stopped",
        "instance-deleted",
      ]
    ) {
      assert.ok(actions.includes(a), `lifecycle ${a} in ${actions}`);
    }
    const createEvents = feed.events.filter((e) =>
      e.type === "operation" && e.metadata.id === created.metadata.id
    );
    assert.deepEqual(createEvents.map((e) => e.metadata.status_code), [103, 200]);
  } finally {
    await d.cleanup();
  }
});

Deno.test("the API answers bad requests with Incus error envelopes", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("bb");
    const name = uniqueName("e");
    await d.ok("launch", "bb", name);
    const cases: [string, string, unknown, number, RegExp][] = [
      ["GET", "/1.0/instances/nope", undefined, 404, /Instance "nope" not found/],
      ["GET", "/1.0/nothing-here", undefined, 404, /not found/],
      ["PUT", `/1.0/instances/${name}/state`, { action: "dance" }, 400, /action must be one of/],
      [
        "POST",
        "/1.0/instances",
        { name: "x", source: { type: "image", alias: "missing" } },
        404,
        /Image "missing" not found/,
      ],
      [
        "POST",
        "/1.0/instances",
        { name, source: { type: "image", alias: "bb" } },
        409,
        /already exists/,
      ],
      [
        "POST",
        "/1.0/instances",
        { name: "ok", source: { type: "image", alias: "bb" }, config: { "limits.nope": "1" } },
        400,
        /Unknown config key "limits.nope"/,
      ],
      [
        "POST",
        "/1.0/instances",
        { name: "ok", source: { type: "image", alias: "bb" }, colour: "red" },
        400,
        /Unknown field "colour"/,
      ],
      ["DELETE", `/1.0/instances/${name}`, undefined, 409, /is running/],
      ["PUT", `/1.0/instances/${name}/state`, { action: "start" }, 409, /already running/],
      ["GET", "/1.0/operations/0000", undefined, 404, /Operation "0000" not found/],
      ["GET", "/1.0/images/ffff", undefined, 404, /Image "ffff" not found/],
      ["POST", `/1.0/instances/${name}/exec`, { command: [] }, 400, /command must not be empty/],
    ];
    for (const [method, path, body, status, message] of cases) {
      const res = await d.api.fetch(method, path, { body });
      const env = await res.json();
      assert.equal(res.status, status, `${method} ${path}`);
      assert.equal(env.type, "error");
      assert.equal(env.error_code, status);
      assert.match(env.error, message, `${method} ${path}`);
    }
    const bad = await d.api.fetch("POST", "/1.0/instances", {
      raw: "{not json",
      headers: { "Content-Type": "application/json" },
    });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /Invalid JSON body/);

    // If-Match: a stale ETag is refused with 412 and changes nothing.
    const got = await d.api.fetch("GET", `/1.0/instances/${name}`);
    const etag = got.headers.get("etag")!;
    const inst = (await got.json()).metadata;
    const put = (tag: string, value: string) =>
      d.api.fetch("PUT", `/1.0/instances/${name}`, {
        body: { ...inst, config: { ...inst.config, "user.note": value } },
        headers: { "If-Match": tag },
      });
    assert.equal((await put(etag, "first")).status, 202);
    const stale = await put(etag, "second");
    assert.equal(stale.status, 412);
    await stale.body?.cancel();
    assert.equal((await d.ok("config", "get", name, "user.note")).trim(), "first");
  } finally {
    await d.cleanup();
  }
});

Deno.test("images: import, alias, list, delete through the API and the CLI", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("first");
    const [image] = await d.api.get<
      {
        fingerprint: string;
        aliases: { name: string }[];
        size: number;
        properties: Record<string, string>;
      }[]
    >(
      "/1.0/images?recursion=1",
    );
    assert.match(image.fingerprint, /^[0-9a-f]{64}$/);
    assert.deepEqual(image.aliases.map((a) => a.name), ["first"]);
    assert.equal(image.properties.os, "busybox");
    // The fingerprint is the sha256 of the file.
    const { busyboxTarball } = await import("./helpers.ts");
    const bytes = await Deno.readFile(await busyboxTarball());
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    assert.equal(
      image.fingerprint,
      Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    );
    assert.equal(image.size, bytes.length);

    // Importing the same file again is a conflict; a file that is not an image is refused.
    const again = await d.cli("image", "import", await busyboxTarball());
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
    const junk = await Deno.makeTempFile();
    await Deno.writeTextFile(junk, "not an image");
    const r = await d.cli("image", "import", junk);
    await Deno.remove(junk);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Invalid image/);

    await d.ok("image", "alias", "create", "second", image.fingerprint.slice(0, 12));
    assert.match(await d.ok("image", "list"), /first\s*\|[\s\S]*second|second[\s\S]*first/);
    await d.ok("image", "alias", "delete", "first");
    const aliases = await d.api.get<string[]>("/1.0/images/aliases");
    assert.deepEqual(aliases, ["/1.0/images/aliases/second"]);

    await d.ok("image", "delete", "second");
    assert.deepEqual(await d.api.get("/1.0/images"), []);
    assert.deepEqual(await d.api.get("/1.0/images/aliases"), []);
  } finally {
    await d.cleanup();
  }
});

Deno.test("five concurrent uploads of one new image: one imports it, the others get 409", async () => {
  const d = await TestDaemon.start();
  try {
    const image = await Deno.readFile(await busyboxTarball());
    const results = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const res = await d.api.fetch("POST", "/1.0/images", { raw: image });
        const body = await res.json();
        if (res.status !== 202) return res.status;
        const op = await d.api.request<{ status_code: number }>(
          "GET",
          `/1.0/operations/${body.metadata.id}/wait`,
        );
        return op.metadata.status_code === 200 ? 200 : op.metadata.status_code;
      }),
    );
    assert.deepEqual(results.sort(), [200, 409, 409, 409, 409]);
    assert.equal((await d.api.get<string[]>("/1.0/images")).length, 1);
  } finally {
    await d.cleanup();
  }
});

Deno.test("record-output keeps at most 64 MiB of a stream and the command still finishes", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("rec");
    await d.ok("launch", "busybox", name);
    const op = await d.api.run("POST", `/1.0/instances/${name}/exec`, {
      body: {
        command: ["sh", "-c", "head -c 80000000 /dev/zero; echo done >&2"],
        "record-output": true,
      },
    }) as { metadata: { return: number; output: Record<string, string> } };
    assert.equal(op.metadata.return, 0);
    const out = await d.api.fetch("GET", op.metadata.output["1"]);
    assert.equal((await out.arrayBuffer()).byteLength, 64 * 2 ** 20);
    const err = await d.api.fetch("GET", op.metadata.output["2"]);
    assert.equal(await err.text(), "done\n");
  } finally {
    await d.cleanup();
  }
});
