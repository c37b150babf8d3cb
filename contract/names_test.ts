import assert from "node:assert/strict";
import { checkAliasName, checkInstanceName } from "./names.ts";
import { BadRequest } from "./errors.ts";

Deno.test("checkInstanceName() accepts RFC 1123 labels", () => {
  for (const name of ["c1", "web-01", "A", "x".repeat(63)]) {
    assert.equal(checkInstanceName(name), name);
  }
});

Deno.test("checkInstanceName() refuses names that are not labels", () => {
  for (const name of ["", "1abc", "-a", "a-", "a_b", "a.b", "x".repeat(64), "a b", "é"]) {
    assert.throws(() => checkInstanceName(name), BadRequest, name);
  }
});

Deno.test("checkAliasName() refuses separators", () => {
  assert.equal(checkAliasName("busybox"), "busybox");
  for (const name of ["", "a b", "a/b", "r:a"]) {
    assert.throws(() => checkAliasName(name), BadRequest);
  }
});
