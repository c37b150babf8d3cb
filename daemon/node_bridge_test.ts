import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { toRequest } from "./node_bridge.ts";

const incoming = (url: string, method = "GET", rawHeaders: string[] = []) =>
  ({ url, method, rawHeaders }) as unknown as IncomingMessage;

Deno.test("toRequest() keeps the path and query of origin-form and absolute-form targets", () => {
  assert.equal(
    new URL(toRequest(incoming("/1.0/instances?recursion=1")).url).pathname,
    "/1.0/instances",
  );
  const abs = new URL(toRequest(incoming("http://outpost/1.0/images?x=1")).url);
  assert.equal(abs.pathname + abs.search, "/1.0/images?x=1");
});

Deno.test("toRequest() never resolves a network-path target to another path", () => {
  assert.equal(new URL(toRequest(incoming("//evil/1.0")).url).pathname, "//evil/1.0");
  assert.equal(new URL(toRequest(incoming("*")).url).pathname, "/");
});

Deno.test("toRequest() keeps headers it can and refuses methods the fetch API cannot carry", () => {
  const req = toRequest(incoming("/1.0", "GET", ["X-Incus-Type", "file", "Bad\nName", "x"]));
  assert.equal(req.headers.get("x-incus-type"), "file");
  assert.throws(() => toRequest(incoming("/1.0", "TRACE")), TypeError);
});
