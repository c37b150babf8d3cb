/** The server certificate: made by the real openssl into a temp dir, reused, remade when broken. */
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { join } from "node:path";
import {
  CERT_FILE,
  certHostname,
  type CommandRunner,
  ensureServerCert,
  isDnsName,
  KEY_FILE,
  runCommand,
} from "./server_cert.ts";

const HOST = { hostname: "edge-1.example.org", user: "root" };

async function withDir(
  fn: (dir: string, runner: CommandRunner, argvs: string[][]) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "outpost-cert-" });
  const argvs: string[][] = [];
  const runner: CommandRunner = {
    run: (argv, opts) => {
      argvs.push(argv);
      return runCommand.run(argv, opts);
    },
  };
  try {
    await fn(dir, runner, argvs);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("isDnsName accepts host names and refuses what is not one", () => {
  for (const ok of ["localhost", "edge-1", "a.b.c", "X1", "a".repeat(63)]) {
    assert.ok(isDnsName(ok), ok);
  }
  const long = Array(64).fill("abc").join(".");
  for (const bad of ["", "-a", "a-", "a..b", "a_b", "a b", "a/b", "x=y", "a".repeat(64), long]) {
    assert.ok(!isDnsName(bad), bad);
  }
  assert.equal(certHostname("bad/name,IP:1.2.3.4"), "localhost");
  assert.equal(certHostname("edge-1"), "edge-1");
});

Deno.test("ensureServerCert makes a self-signed P-384 pair valid ten years, key 0600", async () => {
  await withDir(async (dir, runner, argvs) => {
    const made = await ensureServerCert(runner, dir, HOST);
    assert.equal(argvs.length, 1);
    assert.equal(argvs[0][0], "openssl");
    const pem = await Deno.readTextFile(join(dir, CERT_FILE));
    assert.equal(made.certificate, pem);
    const cert = new X509Certificate(pem);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, "secp384r1");
    assert.match(cert.subject, /CN=root@edge-1\.example\.org/);
    assert.equal(cert.issuer, cert.subject);
    const sans = cert.subjectAltName?.split(", ") ?? [];
    assert.equal(sans[0], "DNS:edge-1.example.org");
    assert.ok(sans.includes("IP Address:127.0.0.1"), cert.subjectAltName);
    assert.ok(sans.includes("IP Address:::1"), cert.subjectAltName);
    const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 86400_000);
    assert.ok(Math.abs(years - 10) < 0.02, `valid ${years} years`);
    assert.equal(made.fingerprint, createHash("sha256").update(cert.raw).digest("hex"));
    assert.match(made.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal((await Deno.stat(join(dir, KEY_FILE))).mode! & 0o777, 0o600);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [CERT_FILE, KEY_FILE]);
  });
});

Deno.test("ensureServerCert reuses a valid pair without running openssl", async () => {
  await withDir(async (dir, runner, argvs) => {
    const first = await ensureServerCert(runner, dir, HOST);
    const again = await ensureServerCert(runner, dir, HOST);
    assert.deepEqual(again, first);
    assert.equal(argvs.length, 1);
  });
});

Deno.test("ensureServerCert remakes a corrupt, missing or mismatched pair and drops temp dirs", async () => {
  await withDir(async (dir, runner, argvs) => {
    const first = await ensureServerCert(runner, dir, HOST);
    await Deno.writeTextFile(join(dir, CERT_FILE), "-----BEGIN CERTIFICATE-----\nAAAA");
    const second = await ensureServerCert(runner, dir, HOST);
    assert.notEqual(second.fingerprint, first.fingerprint);
    await Deno.remove(join(dir, KEY_FILE));
    const third = await ensureServerCert(runner, dir, HOST);
    assert.notEqual(third.fingerprint, second.fingerprint);
    // A key renamed into place by a run killed before its certificate followed.
    const other = await Deno.makeTempDir({ prefix: "outpost-cert-other-" });
    try {
      await ensureServerCert(runner, other, HOST);
      await Deno.copyFile(join(other, KEY_FILE), join(dir, KEY_FILE));
    } finally {
      await Deno.remove(other, { recursive: true });
    }
    await Deno.mkdir(join(dir, ".server-cert-left"));
    const fourth = await ensureServerCert(runner, dir, HOST);
    assert.notEqual(fourth.fingerprint, third.fingerprint);
    assert.equal(argvs.length, 5);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [CERT_FILE, KEY_FILE]);
  });
});

Deno.test("ensureServerCert names localhost when the host's name is not a DNS name", async () => {
  await withDir(async (dir, runner) => {
    const made = await ensureServerCert(runner, dir, { hostname: "bad host/x", user: "x y" });
    const cert = new X509Certificate(made.certificate);
    assert.equal(cert.subjectAltName?.split(", ")[0], "DNS:localhost");
    assert.match(cert.subject, /CN=root@localhost/);
  });
});
