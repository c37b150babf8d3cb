import assert from "node:assert/strict";
import type { Hono } from "hono";
import { CertificateSchema } from "../../contract/responses.ts";
import { call, refused, withApp } from "../../tests/app_fixture.ts";
import { makeCert } from "../../tests/certs.ts";

const dir = await Deno.makeTempDir({ prefix: "outpost-certs-api-" });
const [alpha, beta, weak, expired] = await Promise.all([
  makeCert(dir, "alpha"),
  makeCert(dir, "beta"),
  makeCert(dir, "weak", "rsa1024"),
  makeCert(dir, "old", "expired"),
]);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** The metadata of GET PATH, a Certificate by the strict contract schema. */
async function certificate(app: Hono, path: string) {
  const { res, body } = await call(app, "GET", path);
  assert.equal(res.status, 200, JSON.stringify(body));
  return CertificateSchema.parse(body.metadata);
}

Deno.test("POST /1.0/certificates answers 201 with the certificate's URL; GET shows it", () =>
  withApp(async (app) => {
    const { res, body } = await call(app, "POST", "/1.0/certificates", {
      certificate: alpha.base64,
      name: "laptop",
      type: "client",
      restricted: false,
      projects: null,
      description: "",
    });
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.equal(res.headers.get("location"), `/1.0/certificates/${alpha.fingerprint}`);
    assert.equal(body.type, "sync");
    assert.deepEqual(await certificate(app, `/1.0/certificates/${alpha.fingerprint}`), {
      name: "laptop",
      type: "client",
      restricted: false,
      projects: [],
      certificate: alpha.pem,
      fingerprint: alpha.fingerprint,
      description: "",
    });
    // PEM is taken too; the list answers URLs, or objects with recursion.
    assert.equal(
      (await call(app, "POST", "/1.0/certificates", { certificate: beta.pem })).res.status,
      201,
    );
    const urls = (await call(app, "GET", "/1.0/certificates")).body.metadata;
    assert.deepEqual(
      [...urls].sort(),
      [alpha, beta].map((c) => `/1.0/certificates/${c.fingerprint}`).sort(),
    );
    const all = (await call(app, "GET", "/1.0/certificates?recursion=1")).body.metadata;
    assert.deepEqual(
      all.map((c: unknown) => CertificateSchema.parse(c).name).sort(),
      ["beta", "laptop"],
    );
  }));

Deno.test("POST /1.0/certificates refuses duplicates (409), bad certificates (400) and tokens without a listener (400)", () =>
  withApp(async (app) => {
    await call(app, "POST", "/1.0/certificates", { certificate: alpha.base64 });
    assert.match(
      await refused(app, "POST", "/1.0/certificates", { certificate: alpha.pem }, 409),
      /already trusted/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", { certificate: weak.base64 }, 400),
      /RSA key has 1024 bits/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", { certificate: expired.base64 }, 400),
      /expired/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", { certificate: "bm9wZQ==" }, 400),
      /Invalid certificate/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", {}, 400),
      /certificate is required/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", { token: true, name: "x" }, 400),
      /no HTTPS listener: set core.https_address/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", {
        certificate: beta.base64,
        projects: ["other"],
      }, 400),
      /"default" project/,
    );
    assert.match(
      await refused(
        app,
        "POST",
        "/1.0/certificates",
        { certificate: beta.base64, type: "admin" },
        400,
      ),
      /type/,
    );
    assert.match(
      await refused(app, "POST", "/1.0/certificates", { certificate: beta.base64, extra: 1 }, 400),
      /Unknown field "extra"/,
    );
    assert.equal((await call(app, "GET", "/1.0/certificates")).body.metadata.length, 1);
  }));

Deno.test("PUT and PATCH /1.0/certificates/{fingerprint} change it, by a unique prefix", () =>
  withApp(async (app) => {
    await call(app, "POST", "/1.0/certificates", { certificate: alpha.base64, name: "a" });
    const url = `/1.0/certificates/${alpha.fingerprint}`;
    const short = `/1.0/certificates/${alpha.fingerprint.slice(0, 12)}`;
    // What `lxc config trust edit` does: GET, change, PUT the object back.
    const current = await certificate(app, short);
    const put = await call(app, "PUT", short, {
      ...current,
      description: "edited",
      type: "metrics",
    });
    assert.equal(put.res.status, 200, JSON.stringify(put.body));
    assert.deepEqual(await certificate(app, url), {
      ...current,
      description: "edited",
      type: "metrics",
    });
    const patch = await call(app, "PATCH", url, { restricted: true, projects: ["default"] });
    assert.equal(patch.res.status, 200, JSON.stringify(patch.body));
    assert.deepEqual(await certificate(app, url), {
      ...current,
      description: "edited",
      type: "metrics",
      restricted: true,
      projects: ["default"],
    });
    // A PUT replaces every field: those left out go back to their zero values.
    await call(app, "PUT", url, { name: "b" });
    assert.deepEqual(await certificate(app, url), { ...current, name: "b" });
    assert.match(await refused(app, "PATCH", url, { projects: ["p"] }, 400), /"default" project/);
    assert.match(
      await refused(app, "PUT", url, { ...current, certificate: beta.pem }, 400),
      /Replacing a trusted certificate/,
    );
    await refused(app, "PATCH", `/1.0/certificates/${"0".repeat(64)}`, { name: "x" }, 404);
  }));

Deno.test("DELETE /1.0/certificates/{fingerprint} forgets it", () =>
  withApp(async (app) => {
    await call(app, "POST", "/1.0/certificates", { certificate: alpha.base64 });
    const url = `/1.0/certificates/${alpha.fingerprint}`;
    assert.equal((await call(app, "DELETE", url)).res.status, 200);
    await refused(app, "GET", url, undefined, 404);
    await refused(app, "DELETE", url, undefined, 404);
    assert.deepEqual((await call(app, "GET", "/1.0/certificates")).body.metadata, []);
  }));
