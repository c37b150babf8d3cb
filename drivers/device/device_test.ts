import assert from "node:assert/strict";
import { BadRequest } from "../../contract/errors.ts";
import { checkDevice, checkDevices, deviceReference } from "./device.ts";

const ctx = { pools: new Set(["default"]) };
const ROOT = { type: "disk", path: "/", pool: "default" };

function refuses(fn: () => unknown, part: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequest, `expected a BadRequest, got ${err}`);
    assert.match(err.message, part);
    return true;
  });
}

Deno.test("checkDevice() takes none and the root disk on a pool that exists", () => {
  assert.equal(checkDevice("root", ROOT, ctx).type, "disk");
  assert.equal(checkDevice("eth0", { type: "none" }, ctx).type, "none");
  assert.equal(checkDevice("r", ROOT, { ...ctx, instanceType: "virtual-machine" }).type, "disk");
});

Deno.test("checkDevice() refuses bad names, types, keys and values, naming them", () => {
  refuses(() => checkDevice("a/b", ROOT, ctx), /Invalid device name/);
  refuses(() => checkDevice("a\nb", ROOT, ctx), /Invalid device name "a\?b"/);
  refuses(() => checkDevice("d", { path: "/" }, ctx), /has no type/);
  refuses(() => checkDevice("d", { type: "bogus" }, ctx), /unknown device type "bogus"/);
  refuses(() => checkDevice("d", { type: "nic", network: "x" }, ctx), /"nic" is not supported yet/);
  refuses(() => checkDevice("d", { type: "none", k: "v" }, ctx), /unknown key "k"/);
  refuses(() => checkDevice("d", { type: "disk", pool: "default" }, ctx), /needs "path"/);
  refuses(() => checkDevice("d", { ...ROOT, path: "rel" }, ctx), /invalid "path"/);
  refuses(() => checkDevice("d", { ...ROOT, path: "/a/../b" }, ctx), /invalid "path"/);
  refuses(() => checkDevice("d", { ...ROOT, path: "/srv" }, ctx), /only the root disk/);
  refuses(() => checkDevice("d", { type: "disk", path: "/" }, ctx), /needs a pool/);
  refuses(() => checkDevice("d", { ...ROOT, pool: "x y" }, ctx), /invalid "pool"/);
  refuses(() => checkDevice("d", { ...ROOT, pool: "fast" }, ctx), /pool "fast" does not exist/);
});

Deno.test("checkDevices() allows one root disk at most", () => {
  checkDevices({ root: ROOT, hide: { type: "none" } }, ctx);
  refuses(() => checkDevices({ a: ROOT, b: ROOT }, ctx), /"a" and "b" are both a root disk/);
});

Deno.test("deviceReference() lists each type with its keys, and what is not supported yet", () => {
  const text = deviceReference();
  assert.match(text, /### `disk`/);
  assert.match(text, /\| `path` \| yes \| no \|/);
  assert.match(text, /Not supported yet \(refused by name\): `nic`, `proxy`/);
});
