import assert from "node:assert/strict";
import { decodeJoinToken, encodeJoinToken, matchesLabels, parseLabels } from "./fleet.ts";

Deno.test("a join token round-trips; a malformed one is a one-line error", () => {
  const t = {
    hub: ["https://10.0.0.1:8443"],
    fingerprint: "a".repeat(64),
    secret: "b".repeat(64),
    expires_at: "",
  };
  const text = encodeJoinToken(t);
  assert.match(text, /^outpost-join\.[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeJoinToken(text), t);
  assert.throws(() => decodeJoinToken("outpost-join.!!!"), /^Error: Invalid join token/);
  const bad = encodeJoinToken({ ...t, fingerprint: "zz" });
  assert.throws(() => decodeJoinToken(bad), /fields are malformed/);
});

Deno.test("labels parse from k=v words and select hosts", () => {
  assert.deepEqual(parseLabels(["site=paris", "tier="]), { site: "paris", tier: "" });
  assert.throws(() => parseLabels(["site"]), /KEY=VALUE/);
  assert.throws(() => parseLabels(["bad key=x"]));
  assert.ok(matchesLabels({ site: "paris", rack: "1" }, { site: "paris" }));
  assert.ok(!matchesLabels({ site: "paris" }, { site: "berlin" }));
  assert.ok(matchesLabels({}, {}));
});
