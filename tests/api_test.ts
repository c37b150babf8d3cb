/** End to end through the HTTP API on the unix socket: operations, events, exec, images. */
import assert from "node:assert/strict";
import { openEvents } from "../contract/ws_client.ts";
import { busyboxTarball, eventually, sharedDaemon, TestDaemon, uniqueName } from "./helpers.ts";

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

/** The daemon the instance tests share, with the busybox image as "bb". */
const instances = sharedDaemon((d) => d.importBusybox("bb"));
/** The instance they share, and the config it is made with. */
const NAME = uniqueName("api");
const CONFIG = ["-c", "environment.GREETING=hello"];

/** The shared daemon, with the shared instance running (launched or started if need be). */
async function running(): Promise<TestDaemon> {
  const d = await instances();
  await d.ensureRunning(NAME, "bb", ...CONFIG);
  return d;
}

/** Creates an instance of the shared daemon's image; returns the raw answer. */
function create(d: TestDaemon, name: string): Promise<Response> {
  return d.api.fetch("POST", "/1.0/instances", {
    body: { name, source: { type: "image", alias: "bb" } },
  });
}

/** Deletes an instance a test made, whatever state the test left it in. */
async function remove(d: TestDaemon, name: string): Promise<void> {
  if (await d.status(name) === undefined) return;
  await d.api.run("PUT", `/1.0/instances/${name}/state`, { body: { action: "stop", force: true } })
    .catch(() => {/* not running */});
  await d.api.run("DELETE", `/1.0/instances/${name}`);
}

/** Runs a state change (start, stop...) and returns its answer, after its operation ends. */
async function changeState(d: TestDaemon, name: string, body: Record<string, unknown>) {
  const answer = await d.api.request<Op>("PUT", `/1.0/instances/${name}/state`, { body });
  await d.api.wait(answer.metadata.id);
  return answer;
}

/** Runs `command` in `name` through the exec API with record-output; returns code and output. */
async function recordedExec(
  d: TestDaemon,
  name: string,
  command: string[],
  environment: Record<string, string> = {},
): Promise<{ code: unknown; stdout: string; stderr: string }> {
  const exec = await d.api.request<Op>("POST", `/1.0/instances/${name}/exec`, {
    body: { command, environment, "record-output": true, "wait-for-websocket": false },
  });
  const done = await d.api.wait(exec.metadata.id);
  const output = done.metadata?.output as Record<string, string>;
  return {
    code: done.metadata?.return,
    stdout: await (await d.api.fetch("GET", output["1"])).text(),
    stderr: await (await d.api.fetch("GET", output["2"])).text(),
  };
}

Deno.test("creating an instance answers 202 with its operation, also named in Location", async () => {
  const d = await instances();
  const name = uniqueName("api");
  try {
    const res = await create(d, name);
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
  } finally {
    await remove(d, name);
  }
});

Deno.test("an operation's events report it running (103), then done (200)", async () => {
  const d = await instances();
  const name = uniqueName("api");
  const feed = await listen(d, "operation");
  try {
    const created = await (await create(d, name)).json();
    await d.api.wait(created.metadata.id);
    await eventually(
      () =>
        feed.events.some((e) =>
          e.metadata.id === created.metadata.id && e.metadata.status_code === 200
        ),
      5_000,
      "the operation's last event",
    );
    const events = feed.events.filter((e) => e.metadata.id === created.metadata.id);
    assert.deepEqual(events.map((e) => e.metadata.status_code), [103, 200]);
  } finally {
    await feed.close();
    await remove(d, name);
  }
});

Deno.test("PUT state with action start starts a stopped instance as an operation", async () => {
  const d = await instances();
  await d.ensureStopped(NAME, "bb", ...CONFIG);
  const start = await changeState(d, NAME, { action: "start" });
  assert.equal(start.type, "async");
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

Deno.test("GET state of a running instance reports its pid, processes, memory, CPU and network", async () => {
  const d = await running();
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
  >(`/1.0/instances/${NAME}/state`);
  assert.equal(state.status, "Running");
  assert.equal(state.status_code, 103);
  assert.equal(state.pid, (await d.lxcState(NAME)).pid);
  assert.ok(state.processes >= 1);
  assert.ok(state.memory.usage > 0);
  assert.ok(state.cpu.usage > 0);
  assert.ok("lo" in state.network);
});

Deno.test("exec with record-output gives the exit code in metadata.return and the output as log files", async () => {
  const d = await running();
  const r = await recordedExec(d, NAME, ["sh", "-c", "echo out; echo oops >&2; exit 7"]);
  assert.deepEqual(r, { code: 7, stdout: "out\n", stderr: "oops\n" });
});

Deno.test("exec runs in /root with the instance's environment.* keys and the request's environment", async () => {
  const d = await running();
  const r = await recordedExec(d, NAME, ["sh", "-c", 'echo "$GREETING $EXTRA"; pwd'], {
    EXTRA: "world",
  });
  assert.equal(r.stdout, "hello world\n/root\n");
});

Deno.test("an instance at recursion=1 carries its state", async () => {
  const d = await running();
  const full = await d.api.get<{ state: { pid: number }; status: string }>(
    `/1.0/instances/${NAME}?recursion=1`,
  );
  assert.equal(full.status, "Running");
  assert.ok(full.state.pid > 0);
});

Deno.test("the instance list at recursion=0 is the instances' URLs", async () => {
  const d = await running();
  assert.deepEqual(await d.api.get<string[]>("/1.0/instances"), [`/1.0/instances/${NAME}`]);
});

Deno.test("PUT state with action stop and force stops a running instance as an operation", async () => {
  const d = await running();
  const stop = await changeState(d, NAME, { action: "stop", force: true });
  assert.equal(stop.type, "async");
  assert.equal((await d.lxcState(NAME)).state, "STOPPED");
});

Deno.test("DELETE of a stopped instance removes it as an operation", async () => {
  const d = await instances();
  await d.ensureStopped(NAME, "bb", ...CONFIG);
  const del = await d.api.request<Op>("DELETE", `/1.0/instances/${NAME}`);
  assert.equal(del.type, "async");
  await d.api.wait(del.metadata.id);
  assert.equal(await d.status(NAME), undefined);
  assert.equal((await d.lxcState(NAME)).state, "");
});

Deno.test("create, start, exec, stop and delete each send their lifecycle event", async () => {
  const d = await instances();
  const name = uniqueName("api");
  const feed = await listen(d, "lifecycle");
  try {
    await d.api.wait((await (await create(d, name)).json()).metadata.id);
    await changeState(d, name, { action: "start" });
    await recordedExec(d, name, ["true"]);
    await changeState(d, name, { action: "stop", force: true });
    await d.api.run("DELETE", `/1.0/instances/${name}`);
    const actions = () => feed.events.map((e) => e.metadata.action);
    await eventually(() => actions().includes("instance-deleted"), 5_000, "instance-deleted");
    for (
      const a of [
        "instance-created",
        "instance-started",
        "instance-exec",
        "instance-stopped",
        "instance-deleted",
      ]
    ) {
      assert.ok(actions().includes(a), `lifecycle ${a} in ${actions()}`);
    }
  } finally {
    await feed.close();
    await remove(d, name);
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

interface Image {
  fingerprint: string;
  aliases: { name: string }[];
  size: number;
  properties: Record<string, string>;
}

/** The daemon the image tests share. */
const images = sharedDaemon();

/** The daemon's image (the tests keep one at the most). */
async function theImage(d: TestDaemon): Promise<Image | undefined> {
  return (await d.api.get<Image[]>("/1.0/images?recursion=1"))[0];
}

/** Gives `name` to the daemon's image through the API. */
async function addAlias(d: TestDaemon, name: string): Promise<void> {
  const image = await theImage(d);
  await d.api.request("POST", "/1.0/images/aliases", {
    body: { name, target: image?.fingerprint },
  });
}

/**
 * The image daemon as every image test starts: the busybox image, with the alias "first" and no
 * other (imported again, or its aliases put back, if an earlier test changed them).
 */
async function withImage(): Promise<TestDaemon> {
  const d = await images();
  const image = await theImage(d);
  if (!image) {
    await d.importBusybox("first");
    return d;
  }
  for (const { name } of image.aliases) {
    if (name !== "first") await d.api.request("DELETE", `/1.0/images/aliases/${name}`);
  }
  if (!image.aliases.some((a) => a.name === "first")) await addAlias(d, "first");
  return d;
}

Deno.test("an imported image is listed with its alias and its properties", async () => {
  const image = await theImage(await withImage());
  assert.deepEqual(image?.aliases.map((a) => a.name), ["first"]);
  assert.equal(image?.properties.os, "busybox");
});

Deno.test("an image's fingerprint is the sha256 of its file, and its size the file's size", async () => {
  const image = await theImage(await withImage());
  assert.match(image?.fingerprint ?? "", /^[0-9a-f]{64}$/);
  const bytes = await Deno.readFile(await busyboxTarball());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  assert.equal(
    image?.fingerprint,
    Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
  );
  assert.equal(image?.size, bytes.length);
});

Deno.test("importing an image file a second time is refused: it already exists", async () => {
  const d = await withImage();
  const again = await d.cli("image", "import", await busyboxTarball());
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
});

Deno.test("importing a file that is not an image is refused as an invalid image", async () => {
  const d = await withImage();
  const junk = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(junk, "not an image");
    const r = await d.cli("image", "import", junk);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Invalid image/);
  } finally {
    await Deno.remove(junk);
  }
});

Deno.test("image alias create names an image by a fingerprint prefix, and image list shows every alias", async () => {
  const d = await withImage();
  const prefix = (await theImage(d))?.fingerprint.slice(0, 12) ?? "";
  await d.ok("image", "alias", "create", "second", prefix);
  assert.match(await d.ok("image", "list"), /first\s*\|[\s\S]*second|second[\s\S]*first/);
});

Deno.test("image alias delete removes that alias and keeps the image's others", async () => {
  const d = await withImage();
  await addAlias(d, "second");
  await d.ok("image", "alias", "delete", "first");
  assert.deepEqual(await d.api.get("/1.0/images/aliases"), ["/1.0/images/aliases/second"]);
});

Deno.test("image delete by an alias removes the image and all its aliases", async () => {
  const d = await withImage();
  await addAlias(d, "second");
  await d.ok("image", "delete", "second");
  assert.deepEqual(await d.api.get("/1.0/images"), []);
  assert.deepEqual(await d.api.get("/1.0/images/aliases"), []);
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
