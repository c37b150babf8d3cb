/** End to end: the daemon's server certificate in `GET /1.0`, kept across a restart and a kill -9. */
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { join } from "node:path";
import type { Server } from "../contract/responses.ts";
import { TestDaemon } from "./helpers.ts";

Deno.test("GET /1.0 shows the server certificate, the same after a restart", async () => {
  const d = await TestDaemon.start();
  try {
    const first = (await d.api.get<Server>("/1.0")).environment;
    const cert = new X509Certificate(first.certificate);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, "secp384r1");
    assert.match(cert.subjectAltName ?? "", /^DNS:[A-Za-z0-9.-]+, /);
    assert.equal(
      first.certificate_fingerprint,
      createHash("sha256").update(cert.raw).digest("hex"),
    );
    assert.equal(await Deno.readTextFile(join(d.dir, "server.crt")), first.certificate);
    assert.equal((await Deno.stat(join(d.dir, "server.key"))).mode! & 0o777, 0o600);

    await d.stop();
    await d.spawn();
    const afterStop = (await d.api.get<Server>("/1.0")).environment;
    assert.equal(afterStop.certificate_fingerprint, first.certificate_fingerprint);
    await d.kill9();
    await d.spawn();
    const afterKill = (await d.api.get<Server>("/1.0")).environment;
    assert.equal(afterKill.certificate_fingerprint, first.certificate_fingerprint);
  } finally {
    await d.cleanup();
  }
});
