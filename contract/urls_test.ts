import assert from "node:assert/strict";
import {
  imageAliasUrl,
  imageUrl,
  instanceFileUrl,
  instanceLogUrl,
  instanceUrl,
  operationUrl,
  snapshotUrl,
} from "./urls.ts";

Deno.test("URL builders percent-encode every name they are given", () => {
  assert.equal(instanceUrl("c1"), "/1.0/instances/c1");
  assert.equal(instanceUrl("a/b?c"), "/1.0/instances/a%2Fb%3Fc");
  assert.equal(
    instanceFileUrl("c1", "/etc/a b&c"),
    "/1.0/instances/c1/files?path=%2Fetc%2Fa%20b%26c",
  );
  assert.equal(snapshotUrl("c1", "s/0"), "/1.0/instances/c1/snapshots/s%2F0");
  assert.equal(instanceLogUrl("c1", "../x"), "/1.0/instances/c1/logs/..%2Fx");
  assert.equal(imageUrl("ab#c"), "/1.0/images/ab%23c");
  assert.equal(imageAliasUrl("my alias"), "/1.0/images/aliases/my%20alias");
  assert.equal(operationUrl("id?x"), "/1.0/operations/id%3Fx");
});
