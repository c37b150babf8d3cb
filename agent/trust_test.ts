import assert from "node:assert/strict";
import { BadRequest, Conflict, InvalidState, NotFound } from "../contract/errors.ts";
import { CertificatesPostSchema } from "../contract/schemas.ts";
import { makeCert, type TestCert } from "../tests/certs.ts";
import { type Core, withCore } from "../tests/core_fixture.ts";
import { parseCertificate, TrustStore } from "./trust.ts";

const dir = await Deno.makeTempDir({ prefix: "outpost-trust-" });
const [alpha, beta, gamma, weak, expired] = await Promise.all([
  makeCert(dir, "alpha"),
  makeCert(dir, "beta"),
  makeCert(dir, "gamma"),
  makeCert(dir, "weak", "rsa1024"),
  makeCert(dir, "old", "expired"),
]);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const post = (cert: TestCert | string, more: Record<string, unknown> = {}) =>
  CertificatesPostSchema.parse({
    certificate: typeof cert === "string" ? cert : cert.base64,
    ...more,
  });

function withTrust(fn: (trust: TrustStore, core: Core) => Promise<void> | void, max?: number) {
  return withCore(async (core) => {
    await fn(new TrustStore(core.store, core.events, max), core);
  });
}

Deno.test("parseCertificate() takes base64 DER and PEM alike, with openssl's fingerprint", () => {
  const fromDer = parseCertificate(alpha.base64);
  const fromPem = parseCertificate(alpha.pem);
  assert.equal(fromDer.fingerprint, alpha.fingerprint);
  assert.deepEqual(fromPem, fromDer);
  assert.equal(fromDer.commonName, "alpha");
  assert.match(fromDer.pem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
});

Deno.test("parseCertificate() refuses garbage, an RSA 1024 key, an expired or future one", () => {
  for (const bad of ["", "not base64!", btoa("not a certificate"), "-----BEGIN CERTIFICATE-----"]) {
    assert.throws(() => parseCertificate(bad), BadRequest, JSON.stringify(bad));
  }
  assert.throws(() => parseCertificate(weak.pem), (e: Error) => {
    return e instanceof BadRequest && /1024 bits, fewer than 2048/.test(e.message);
  });
  assert.throws(() => parseCertificate(expired.base64), (e: Error) => {
    return e instanceof BadRequest && /expired/.test(e.message);
  });
  const past = new Date(Date.now() - 24 * 3600_000);
  assert.throws(() => parseCertificate(alpha.pem, past), /not valid before/);
});

Deno.test("add() stores a certificate as PEM under its fingerprint and announces it", () =>
  withTrust((trust, core) => {
    const rec = trust.add(post(alpha, { name: "laptop", description: "mine" }));
    assert.deepEqual(rec, {
      fingerprint: alpha.fingerprint,
      name: "laptop",
      type: "client",
      restricted: false,
      projects: [],
      certificate: parseCertificate(alpha.pem).pem,
      description: "mine",
    });
    assert.deepEqual(trust.get(alpha.fingerprint), rec);
    assert.deepEqual(core.lifecycle, [{
      action: "certificate-created",
      source: `/1.0/certificates/${alpha.fingerprint}`,
      context: { name: "laptop" },
    }]);
  }));

Deno.test("add() names a certificate sent without a name after its common name", () =>
  withTrust((trust) => {
    assert.equal(trust.add(post(beta.pem)).name, "beta");
  }));

Deno.test("add() refuses a certificate already trusted with a 409, sent as PEM or DER", () =>
  withTrust((trust, core) => {
    trust.add(post(alpha));
    core.reset();
    assert.throws(() => trust.add(post(alpha.pem)), Conflict);
    assert.deepEqual(core.lifecycle, []);
    assert.equal(trust.list().length, 1);
  }));

Deno.test("add() refuses weak, expired and unparsable certificates and stores nothing", () =>
  withTrust((trust) => {
    for (const bad of [weak.base64, expired.pem, "AAAA"]) {
      assert.throws(() => trust.add(post(bad)), BadRequest);
    }
    assert.deepEqual(trust.list(), []);
  }));

Deno.test("add() refuses one certificate more than the store's bound", () =>
  withTrust((trust) => {
    trust.add(post(alpha));
    trust.add(post(beta));
    assert.throws(() => trust.add(post(gamma)), (e: Error) => {
      return e instanceof InvalidState && /full \(2 certificates\)/.test(e.message);
    });
    trust.delete(beta.fingerprint);
    trust.add(post(gamma));
  }, 2));

Deno.test("list() answers every certificate; get() takes a unique prefix", () =>
  withTrust((trust) => {
    trust.add(post(alpha, { name: "a" }));
    trust.add(post(beta, { name: "b" }));
    assert.deepEqual(trust.list().map((r) => r.fingerprint), [alpha.fingerprint, beta.fingerprint]);
    assert.equal(trust.get(alpha.fingerprint.slice(0, 12)).name, "a");
    assert.throws(() => trust.get("0".repeat(64)), NotFound);
    assert.throws(() => trust.get("../etc"), NotFound);
    const common = commonPrefix(alpha.fingerprint, beta.fingerprint);
    if (common) assert.throws(() => trust.get(common), BadRequest);
    assert.throws(() => trust.get(""), NotFound);
  }));

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

Deno.test("update() changes the fields given, keeps the others and announces it", () =>
  withTrust((trust, core) => {
    const rec = trust.add(post(alpha, { name: "a", description: "d" }));
    core.reset();
    trust.update(alpha.fingerprint.slice(0, 8), { type: "metrics", restricted: true });
    assert.deepEqual(trust.get(alpha.fingerprint), {
      ...rec,
      type: "metrics",
      restricted: true,
    });
    trust.update(alpha.fingerprint, { name: "b", projects: ["default"], certificate: alpha.pem });
    assert.deepEqual(trust.get(alpha.fingerprint), {
      ...rec,
      name: "b",
      type: "metrics",
      restricted: true,
      projects: ["default"],
    });
    assert.deepEqual(core.lifecycle.map((e) => [e.action, e.source]), [
      ["certificate-updated", `/1.0/certificates/${alpha.fingerprint}`],
      ["certificate-updated", `/1.0/certificates/${alpha.fingerprint}`],
    ]);
  }));

Deno.test("update() refuses to replace the certificate itself and changes nothing", () =>
  withTrust((trust) => {
    const rec = trust.add(post(alpha));
    assert.throws(
      () => trust.update(alpha.fingerprint, { name: "x", certificate: beta.base64 }),
      /Replacing a trusted certificate is not supported yet/,
    );
    assert.deepEqual(trust.get(alpha.fingerprint), rec);
    assert.throws(() => trust.update(beta.fingerprint, { name: "x" }), NotFound);
  }));

Deno.test("delete() removes a certificate by prefix and announces it", () =>
  withTrust((trust, core) => {
    trust.add(post(alpha, { name: "a" }));
    core.reset();
    trust.delete(alpha.fingerprint.slice(0, 10));
    assert.deepEqual(trust.list(), []);
    assert.deepEqual(core.lifecycle, [{
      action: "certificate-deleted",
      source: `/1.0/certificates/${alpha.fingerprint}`,
      context: { name: "a" },
    }]);
    assert.throws(() => trust.delete(alpha.fingerprint), NotFound);
  }));
