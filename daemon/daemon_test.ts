import assert from "node:assert/strict";
import { guardedHandler } from "./daemon.ts";
import { neverThrows } from "../server/keep_alive.ts";
import { UNIX_CONNECTION } from "../server/connection.ts";

Deno.test("guardedHandler() turns a thrown error into a 500 envelope, not a crash", async () => {
  const logs: string[] = [];
  const handler = guardedHandler(() => {
    throw new TypeError("boom");
  }, (m) => logs.push(m));
  const res = await handler(new Request("http://localhost/1.0"), { connection: UNIX_CONNECTION });
  assert.equal(res.status, 500);
  const body = await res.json();
  assert.equal(body.type, "error");
  assert.equal(body.error_code, 500);
  assert.match(logs[0], /boom/);
});

Deno.test("neverThrows() keeps a failing log from failing its caller", () => {
  const log = neverThrows(() => {
    throw new Error("No space left on device (os error 28)");
  });
  log("a line");
});
