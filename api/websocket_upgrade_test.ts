import assert from "node:assert/strict";
import { Agent } from "../agent/agent.ts";
import { BadRequest, NotFound } from "../contract/errors.ts";
import { createApp } from "./app.ts";
import { guardUpgrade, upgradeProblem } from "./websocket_upgrade.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** A GET upgrade request with the usual headers, `changes` applied (null removes one). */
function upgrade(changes: Record<string, string | null> = {}, method = "GET"): Request {
  const headers: Record<string, string | null> = {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": KEY,
    "sec-websocket-version": "13",
    ...changes,
  };
  const h = new Headers();
  for (const [k, v] of Object.entries(headers)) if (v !== null) h.set(k, v);
  return new Request("http://outpost/1.0/events", { method, headers: h });
}

Deno.test("upgradeProblem() accepts a valid upgrade in any spelling", () => {
  assert.equal(upgradeProblem(upgrade()), undefined);
  assert.equal(
    upgradeProblem(upgrade({ upgrade: "WebSocket", connection: "keep-alive, Upgrade" })),
    undefined,
  );
});

Deno.test("upgradeProblem() names what is wrong with a broken upgrade", () => {
  const cases: [Request, RegExp][] = [
    [upgrade({ upgrade: null }), /^The events endpoint needs a websocket upgrade$/],
    [upgrade({ upgrade: "h2c" }), /needs a websocket upgrade/],
    [upgrade({ upgrade: "websocket2" }), /needs a websocket upgrade/],
    [upgrade({}, "POST"), /use GET/],
    [upgrade({ connection: "close" }), /Connection header must include Upgrade/],
    [upgrade({ connection: "keep-alive" }), /Connection header must include Upgrade/],
    [upgrade({ "sec-websocket-key": null }), /Sec-WebSocket-Key must be 16 bytes in base64/],
    [upgrade({ "sec-websocket-key": "" }), /Sec-WebSocket-Key/],
    [upgrade({ "sec-websocket-key": "not base64!!" }), /Sec-WebSocket-Key/],
    [upgrade({ "sec-websocket-key": btoa("x".repeat(40)) }), /Sec-WebSocket-Key/],
    [upgrade({ "sec-websocket-version": null }), /use Sec-WebSocket-Version 13/],
    [upgrade({ "sec-websocket-version": "8" }), /use Sec-WebSocket-Version 13/],
    [upgrade({ "sec-websocket-version": "99" }), /use Sec-WebSocket-Version 13/],
    [upgrade({ "sec-websocket-version": "abc" }), /use Sec-WebSocket-Version 13/],
  ];
  for (const [req, expected] of cases) {
    const problem = upgradeProblem(req, "The events endpoint");
    assert.match(problem ?? "(none)", expected, JSON.stringify([...req.headers]));
  }
});

Deno.test("guardUpgrade() refuses a broken upgrade before running the upgrade", () => {
  let ran = false;
  assert.throws(
    () => guardUpgrade(upgrade({ "sec-websocket-key": null }), () => ran = true),
    BadRequest,
  );
  assert.equal(ran, false);
});

Deno.test("guardUpgrade() turns Deno's refusal into a 400 and passes other errors on", () => {
  // Deno.upgradeWebSocket throws a TypeError for a request it will not upgrade.
  assert.throws(
    () =>
      guardUpgrade(upgrade(), () => {
        throw new TypeError("Invalid Header: 'sec-websocket-key' header must be set");
      }),
    (err: unknown) => err instanceof BadRequest && err.message.startsWith("Invalid websocket"),
  );
  assert.throws(
    () =>
      guardUpgrade(upgrade(), () => {
        throw new NotFound('Operation "x" not found');
      }),
    NotFound,
  );
});

Deno.test("the events and operation websocket endpoints answer a broken upgrade with a 400", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-api-" });
  const agent = new Agent(dir, () => {});
  try {
    const app = createApp(agent);
    const op = agent.operations.start({
      description: "x",
      class: "websocket",
      websocket: () => undefined,
      run: () => new Promise((r) => setTimeout(r, 50)),
    });
    for (const path of ["/1.0/events", `/1.0/operations/${op.id}/websocket?secret=s`]) {
      const broken: Record<string, string | null>[] = [
        { "sec-websocket-key": null },
        { "sec-websocket-version": "99" },
      ];
      for (const changes of broken) {
        const req = upgrade(changes);
        const res = await app.request(path, { headers: req.headers });
        const body = await res.json();
        assert.equal(res.status, 400, `${path} ${JSON.stringify(changes)}: ${body.error}`);
        assert.equal(body.type, "error");
        assert.equal(body.error_code, 400);
        assert.match(body.error, /Sec-WebSocket/);
      }
    }
    await agent.operations.wait(op.id);
  } finally {
    agent.close();
    await Deno.remove(dir, { recursive: true });
  }
});
