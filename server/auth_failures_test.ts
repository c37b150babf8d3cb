import assert from "node:assert/strict";
import { AuthFailures } from "./auth_failures.ts";

Deno.test("an address is held off after too many failures in a window, and free again after it", () => {
  const f = new AuthFailures(3, 60_000);
  const t = 1_000_000;
  for (let i = 0; i < 2; i++) f.fail("10.0.0.9", t);
  assert.equal(f.heldOff("10.0.0.9", t), 0);
  f.fail("10.0.0.9", t + 1000);
  assert.equal(f.heldOff("10.0.0.9", t + 1000), 59);
  assert.equal(f.heldOff("10.0.0.8", t + 1000), 0, "other addresses are not");
  assert.equal(f.heldOff("10.0.0.9", t + 60_000), 0);
  f.fail("10.0.0.9", t + 60_001);
  assert.equal(f.heldOff("10.0.0.9", t + 60_001), 0, "a new window starts from zero");
});

Deno.test("the table of addresses stays bounded however many addresses fail", () => {
  const f = new AuthFailures(3, 60_000, 100);
  for (let i = 0; i < 10_000; i++) f.fail(`10.1.${i >> 8}.${i & 255}`, 5_000 + i);
  assert.ok(f.size <= 100, `${f.size} addresses kept`);
});
