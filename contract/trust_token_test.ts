import assert from "node:assert/strict";
import { decodeToken, encodeToken, NEVER, tokenExpired, type TrustToken } from "./trust_token.ts";

const token: TrustToken = {
  client_name: "laptop",
  fingerprint: "ab".repeat(32),
  addresses: ["10.0.0.2:8443", "[fd00::2]:8443"],
  secret: "s3cr3t",
  expires_at: NEVER,
};

Deno.test("decodeToken() reads what encodeToken() writes, in standard or URL-safe base64", () => {
  const text = encodeToken(token);
  assert.deepEqual(decodeToken(text), token);
  const urlSafe = text.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  assert.deepEqual(decodeToken(` ${urlSafe}\n`), token);
});

Deno.test("decodeToken() reads a token as lxc prints it", () => {
  const lxc = btoa(JSON.stringify({ ...token, fingerprint: "AB".repeat(32) }));
  assert.equal(decodeToken(lxc).fingerprint, "ab".repeat(32));
});

Deno.test("decodeToken() refuses malformed tokens with one line", () => {
  assert.throws(() => decodeToken("not a token!"), /Invalid trust token: not base64/);
  assert.throws(() => decodeToken(btoa("{")), /not JSON/);
  assert.throws(() => decodeToken(btoa("[]")), /no secret/);
  assert.throws(() => decodeToken(btoa(JSON.stringify({ secret: "x" }))), /fingerprint/);
  assert.throws(
    () => decodeToken(btoa(JSON.stringify({ ...token, addresses: [1] }))),
    /addresses/,
  );
});

Deno.test("tokenExpired() is false for Go's zero time and true past expires_at", () => {
  const now = new Date("2026-01-01T00:00:00Z");
  assert.equal(tokenExpired(token, now), false);
  assert.equal(tokenExpired({ ...token, expires_at: "2025-12-31T23:59:59Z" }, now), true);
  assert.equal(tokenExpired({ ...token, expires_at: "2026-01-01T00:00:01Z" }, now), false);
});
