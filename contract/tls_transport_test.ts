import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { makeCert, type TestCert } from "../tests/certs.ts";
import { ApiClient } from "./client.ts";
import { probeServerCert, TlsTransport } from "./tls_transport.ts";

interface Fixture {
  url: string;
  server: TestCert;
  other: TestCert;
  client: TestCert;
  key: (c: TestCert) => Promise<string>;
  /** What the server saw: the client certificate's fingerprint and the body's sha256, per request. */
  seen: { peer: string; body: string }[];
}

/** An HTTPS server on loopback (TLS 1.3, client certificates asked for) for the time of `fn`. */
async function withServer(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-tls-transport-" });
  const key = (c: TestCert) => Deno.readTextFile(c.path.replace(/\.crt$/, ".key"));
  const server = await makeCert(dir, "server");
  const seen: Fixture["seen"] = [];
  const srv = https.createServer({
    cert: server.pem,
    key: await key(server),
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
  }, (req, res) => {
    const hash = createHash("sha256");
    req.on("data", (d) => hash.update(d));
    req.on("end", () => {
      const raw = (req.socket as TLSSocket).getPeerCertificate().raw;
      const peer = raw ? createHash("sha256").update(raw).digest("hex") : "";
      seen.push({ peer, body: hash.digest("hex") });
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ type: "sync", status_code: 200, metadata: { path: req.url } }));
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  try {
    await fn({
      url: `https://127.0.0.1:${port}`,
      server,
      other: await makeCert(dir, "other"),
      client: await makeCert(dir, "client"),
      key,
      seen,
    });
  } finally {
    await new Promise((r) => srv.close(r));
    await Deno.remove(dir, { recursive: true });
  }
}

async function clientFor(f: Fixture, pinned: TestCert, url = f.url): Promise<ApiClient> {
  return new ApiClient(
    new TlsTransport({
      name: "edge",
      url,
      cert: f.client.pem,
      key: await f.key(f.client),
      serverCert: pinned.pem,
    }),
  );
}

Deno.test("TlsTransport presents the client certificate on plain and streamed requests", async () => {
  await withServer(async (f) => {
    const probe = await probeServerCert(f.url);
    assert.equal(probe.fingerprint, f.server.fingerprint);
    const client = await clientFor(f, f.server);
    try {
      assert.deepEqual(await client.get("/1.0/instances"), { path: "/1.0/instances" });
      const data = new Uint8Array(3 * 2 ** 20).map((_, i) => i * 7);
      const stream = new Blob([data]).stream();
      await client.request("POST", "/upload", { raw: stream });
      const res = await client.fetch("GET", "/x");
      assert.equal(res.status, 200);
      assert.equal((await res.json()).metadata.path, "/x");
      assert.deepEqual(f.seen.map((s) => s.peer), Array(3).fill(f.client.fingerprint));
      assert.equal(f.seen[1].body, createHash("sha256").update(data).digest("hex"));
    } finally {
      client.close();
    }
  });
});

Deno.test("TlsTransport refuses a server whose certificate is not the pinned one", async () => {
  await withServer(async (f) => {
    const client = await clientFor(f, f.other);
    try {
      await assert.rejects(client.get("/1.0"), /other than the one pinned/);
      await assert.rejects(client.fetch("GET", "/1.0"), /other than the one pinned/);
      assert.deepEqual(f.seen, []);
    } finally {
      client.close();
    }
  });
});

Deno.test("TlsTransport names the remote it cannot reach", async () => {
  await withServer(async (f) => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closed = `https://127.0.0.1:${(l.addr as Deno.NetAddr).port}`;
    l.close();
    const client = await clientFor(f, f.server, closed);
    try {
      await assert.rejects(client.get("/1.0"), /^Error: Cannot reach remote "edge" at https:/);
      await assert.rejects(probeServerCert(closed), /Cannot reach https:/);
    } finally {
      client.close();
    }
  });
});
