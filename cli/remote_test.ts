import assert from "node:assert/strict";
import { clientCertArgv, remoteUrl } from "./remote.ts";

Deno.test("remoteUrl() makes https://HOST:PORT of an address, port 8443 by default", () => {
  assert.equal(remoteUrl("10.0.0.2"), "https://10.0.0.2:8443");
  assert.equal(remoteUrl("10.0.0.2:9443"), "https://10.0.0.2:9443");
  assert.equal(remoteUrl("https://edge.example:8443"), "https://edge.example:8443");
  assert.equal(remoteUrl("[::1]:8443"), "https://[::1]:8443");
  assert.throws(() => remoteUrl("http://10.0.0.2"), /expected https/);
  assert.throws(() => remoteUrl("https://10.0.0.2/1.0"), /expected https/);
});

Deno.test("clientCertArgv() makes a self-signed P-384 client certificate", () => {
  const argv = clientCertArgv("root@host", "/k", "/c");
  assert.deepEqual(argv.slice(0, 3), ["req", "-x509", "-newkey"]);
  assert.ok(argv.includes("ec_paramgen_curve:secp384r1"));
  assert.ok(argv.includes("/O=outpost/CN=root@host"));
  assert.ok(argv.includes("extendedKeyUsage=clientAuth"));
  assert.deepEqual(argv.slice(-4), ["-keyout", "/k", "-out", "/c"]);
});
