/**
 * Remote control over HTTPS on loopback: the listener moved live by `core.https_address`, trust
 * by client certificate checked on every request, trust tokens redeemed by the stock LXD 5.0 and
 * Incus 6.0 clients, which then drive the daemon as a remote.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Agent } from "../agent/agent.ts";
import { allRoutes } from "../api/app.ts";
import type { Route } from "../api/route_table.ts";
import { makeCert, type TestCert } from "./certs.ts";
import {
  freePort,
  HAS_INCUS,
  HAS_LXC,
  issueTrustToken,
  randomBytes,
  sharedDaemon,
  StockLxc,
  type TestDaemon,
  uniqueName,
} from "./helpers.ts";

let port = 0;
const daemon = sharedDaemon(async (d) => {
  port = freePort();
  await setConfig(d, { "core.https_address": `127.0.0.1:${port}` });
  await d.importBusybox();
});

/** Sets server config keys over the unix socket. */
async function setConfig(d: TestDaemon, config: Record<string, string>): Promise<void> {
  await d.api.run("PATCH", "/1.0", { body: { config } });
}

interface ServerInfo {
  config: Record<string, string>;
  environment: { certificate: string };
}

/** The server certificate, as a client pins it. */
async function serverPem(d: TestDaemon): Promise<string> {
  return (await d.api.get<ServerInfo>("/1.0")).environment.certificate;
}

/** A fetch over HTTPS that presents `cert` (or no certificate) and pins the server's. */
async function httpsClient(d: TestDaemon, cert?: TestCert) {
  const client = Deno.createHttpClient({
    caCerts: [await serverPem(d)],
    ...(cert
      ? { cert: cert.pem, key: await Deno.readTextFile(cert.path.replace(/\.crt$/, ".key")) }
      : {}),
  });
  return {
    async call(method: string, path: string, body?: unknown) {
      const res = await fetch(`https://127.0.0.1:${port}${path}`, {
        method,
        client,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, json, text };
    },
    close: () => client.close(),
  };
}

async function withCerts<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-remote-certs-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Issues a trust token over the unix socket; answers the token text and its operation id. */
async function issueToken(
  d: TestDaemon,
  extra: Record<string, unknown> = {},
): Promise<{ token: string; id: string }> {
  const issued = await issueTrustToken(d, extra);
  assert.equal(issued.class, "token");
  return issued;
}

Deno.test("GET /1.0 over HTTPS shows an untrusted caller only what the server speaks", async () => {
  const d = await daemon();
  const anon = await httpsClient(d);
  try {
    const r = await anon.call("GET", "/1.0");
    assert.equal(r.status, 200);
    assert.equal(r.json.metadata.auth, "untrusted");
    assert.ok(r.json.metadata.api_extensions.includes("certificate_token"));
    assert.equal(r.json.metadata.environment, undefined);
    assert.equal(r.json.metadata.config, undefined);
  } finally {
    anon.close();
  }
});

Deno.test("every endpoint but GET /1.0 is a 403 to a client without a certificate or with an untrusted one", async () => {
  const d = await daemon();
  const dir = await Deno.makeTempDir({ prefix: "outpost-routes-" });
  const agent = new Agent(dir, () => {});
  let routes: Route[] = [];
  try {
    await agent.init();
    routes = allRoutes(agent);
  } finally {
    agent.close();
    await Deno.remove(dir, { recursive: true });
  }
  await withCerts(async (certs) => {
    const stranger = await makeCert(certs, "stranger");
    for (const client of [await httpsClient(d), await httpsClient(d, stranger)]) {
      try {
        for (const r of routes) {
          if (r.access === "untrusted" && r.method === "GET") continue;
          const path = r.path.replace(/:[a-z]+/g, "x");
          const res = await client.call(r.method, path, r.method === "GET" ? undefined : {});
          const expected = r.access === "secret" ? 400 : 403; // a websocket needs an upgrade
          assert.equal(res.status, expected, `${r.method} ${path}: ${res.text}`);
        }
      } finally {
        client.close();
      }
    }
  });
});

Deno.test("a client whose certificate is trusted is served, and refused as soon as it is removed", async () => {
  const d = await daemon();
  await withCerts(async (certs) => {
    const cert = await makeCert(certs, "laptop");
    const client = await httpsClient(d, cert);
    try {
      await d.api.run("POST", "/1.0/certificates", { body: { certificate: cert.base64 } });
      const ok = await client.call("GET", "/1.0/instances");
      assert.equal(ok.status, 200, ok.text);
      assert.equal((await client.call("GET", "/1.0")).json.metadata.auth, "trusted");
      await d.api.run("DELETE", `/1.0/certificates/${cert.fingerprint}`);
      // The same client, likely on the same kept-alive connection.
      assert.equal((await client.call("GET", "/1.0/instances")).status, 403);
    } finally {
      client.close();
    }
  });
});

Deno.test("a restricted certificate without the default project reads but cannot launch", async () => {
  const d = await daemon();
  await withCerts(async (certs) => {
    const cert = await makeCert(certs, "viewer");
    await d.api.run("POST", "/1.0/certificates", {
      body: { certificate: cert.base64, restricted: true, projects: [] },
    });
    const client = await httpsClient(d, cert);
    try {
      assert.equal((await client.call("GET", "/1.0/instances")).status, 200);
      const launch = await client.call("POST", "/1.0/instances", {
        name: uniqueName("ro"),
        source: { type: "image", alias: "busybox" },
      });
      assert.equal(launch.status, 403, launch.text);
      assert.match(launch.json.error, /restricted/);
      assert.equal((await client.call("PATCH", "/1.0", { config: {} })).status, 403);
      assert.equal((await client.call("GET", "/1.0/certificates")).status, 403);
    } finally {
      client.close();
      await d.api.run("DELETE", `/1.0/certificates/${cert.fingerprint}`);
    }
  });
});

Deno.test("a metrics certificate reads /1.0/metrics with curl and nothing else", async () => {
  const d = await daemon();
  await withCerts(async (certs) => {
    const cert = await makeCert(certs, "prometheus");
    await d.api.run("POST", "/1.0/certificates", {
      body: { certificate: cert.base64, type: "metrics" },
    });
    const ca = join(certs, "server.crt");
    await Deno.writeTextFile(ca, await serverPem(d));
    const curl = async (path: string) => {
      const out = await new Deno.Command("curl", {
        args: [
          "-s",
          "--cacert",
          ca,
          "--cert",
          cert.path,
          "--key",
          cert.path.replace(/\.crt$/, ".key"),
          "-w",
          "\n%{http_code}",
          `https://127.0.0.1:${port}${path}`,
        ],
        stdout: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      return { code: Number(text.slice(text.lastIndexOf("\n") + 1)), body: text };
    };
    const metrics = await curl("/1.0/metrics");
    assert.equal(metrics.code, 200, metrics.body);
    assert.match(metrics.body, /^incus_/m);
    assert.equal((await curl("/1.0/instances")).code, 403);
    await d.api.run("DELETE", `/1.0/certificates/${cert.fingerprint}`);
  });
});

Deno.test("core.metrics_authentication=false lets a client without a certificate read /1.0/metrics, and only that", async () => {
  const d = await daemon();
  const anon = await httpsClient(d);
  try {
    assert.equal((await anon.call("GET", "/1.0/metrics")).status, 403);
    await setConfig(d, { "core.metrics_authentication": "false" });
    const open = await anon.call("GET", "/1.0/metrics");
    assert.equal(open.status, 200);
    assert.match(open.text, /^incus_uptime_seconds /m);
    assert.equal((await anon.call("GET", "/1.0/instances")).status, 403);
  } finally {
    anon.close();
    await setConfig(d, { "core.metrics_authentication": "true" });
  }
  const again = await httpsClient(d);
  try {
    assert.equal((await again.call("GET", "/1.0/metrics")).status, 403);
  } finally {
    again.close();
  }
});

Deno.test("core.https_address moves the listener live, refuses an address it cannot bind, and stops it", async () => {
  const d = await daemon();
  const reach = async (p: number) => {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: p });
      c.close();
      return true;
    } catch {
      return false;
    }
  };
  const other = freePort();
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: freePort() });
  const setAddress = (v: string) =>
    d.api.fetch("PATCH", "/1.0", { body: { config: { "core.https_address": v } } });
  try {
    assert.equal((await setAddress(`127.0.0.1:${other}`)).status, 200);
    assert.ok(await reach(other));
    assert.ok(!(await reach(port)));
    const busy = await setAddress(`127.0.0.1:${(blocker.addr as Deno.NetAddr).port}`);
    assert.equal(busy.status, 400);
    assert.match((await busy.json()).error, /Cannot listen on/);
    assert.ok(await reach(other), "the old listener is kept");
    assert.equal(
      (await d.api.get<ServerInfo>("/1.0")).config["core.https_address"],
      `127.0.0.1:${other}`,
    );
    assert.equal((await setAddress("not an address")).status, 400);
    assert.equal((await setAddress("")).status, 200);
    assert.ok(!(await reach(other)));
  } finally {
    blocker.close();
    await setAddress(`127.0.0.1:${port}`);
  }
  assert.ok(await reach(port));
});

Deno.test("a trust token is single use, and an expired one is refused", async () => {
  const d = await daemon();
  await withCerts(async (certs) => {
    const first = await makeCert(certs, "first");
    const second = await makeCert(certs, "second");
    const { token } = await issueToken(d);
    const a = await httpsClient(d, first);
    const b = await httpsClient(d, second);
    try {
      const redeemed = await a.call("POST", "/1.0/certificates", { trust_token: token });
      assert.equal(redeemed.status, 201, redeemed.text);
      assert.equal((await a.call("GET", "/1.0/instances")).status, 200);
      const again = await b.call("POST", "/1.0/certificates", { password: token });
      assert.equal(again.status, 403);
      assert.match(again.json.error, /No matching trust token/);
      await setConfig(d, { "core.remote_token_expiry": "1S" });
      const late = await issueToken(d);
      assert.ok(late.token);
      await new Promise((r) => setTimeout(r, 1_500));
      const expired = await b.call("POST", "/1.0/certificates", { trust_token: late.token });
      assert.equal(expired.status, 403, expired.text);
      assert.equal((await b.call("GET", "/1.0/instances")).status, 403);
    } finally {
      a.close();
      b.close();
      await setConfig(d, { "core.remote_token_expiry": "" });
      await d.api.run("DELETE", `/1.0/certificates/${first.fingerprint}`).catch(() => {});
    }
  });
});

for (const binary of ["lxc", "incus"] as const) {
  Deno.test({
    name:
      `the stock ${binary} client adds the daemon as a remote with a token, then launches, execs (exit code, PTY, pipes), pushes and pulls 1 MiB (lxc: files API, incus: SFTP), snapshots and deletes`,
    ignore: binary === "lxc" ? !HAS_LXC : !HAS_INCUS,
    fn: async () => {
      const d = await daemon();
      const client = binary === "lxc" ? await StockLxc.for(d) : await StockLxc.incus(d);
      const { token } = await issueToken(d);
      await client.ok("remote", "add", "edge", token);
      assert.match(await client.ok("remote", "list"), /edge/);
      const name = uniqueName(binary);
      await client.ok("launch", "edge:busybox", `edge:${name}`);
      try {
        assert.match(
          await client.ok("list", "edge:", "-c", "ns", "-f", "csv"),
          new RegExp(`${name},RUNNING`),
        );
        const exec = await client.run([
          "exec",
          `edge:${name}`,
          "--",
          "sh",
          "-c",
          "echo out; exit 7",
        ]);
        assert.equal(exec.code, 7);
        assert.equal(exec.stdout, "out\n");
        const tty = await client.tty(
          ["exec", `edge:${name}`, "--", "sh"],
          "stty size; tty; exit 7\r",
        );
        assert.equal(tty.code, 7, tty.stdout + tty.stderr);
        assert.match(tty.stdout, /30 100/);
        assert.match(tty.stdout, /\/dev\/pts\/\d+/);
        const piped = await client.run(
          ["exec", `edge:${name}`, "--", "wc", "-c"],
          "x".repeat(70_000),
        );
        assert.equal(piped.stdout.trim(), "70000");
        {
          const local = join(client.home, "blob");
          const back = join(client.home, "blob.back");
          const mib = randomBytes(2 ** 20);
          await Deno.writeFile(local, mib);
          await client.ok("file", "push", local, `edge:${name}/root/blob`);
          await client.ok("file", "pull", `edge:${name}/root/blob`, back);
          assert.deepEqual(await Deno.readFile(back), mib);
        }
        await client.ok(
          ...(binary === "lxc" ? ["snapshot"] : ["snapshot", "create"]),
          `edge:${name}`,
          "s1",
        );
        assert.match(await client.ok("info", `edge:${name}`), /s1/);
      } finally {
        await client.run(["delete", "-f", `edge:${name}`]);
      }
      assert.doesNotMatch(
        await client.ok("list", "edge:", "-c", "n", "-f", "csv"),
        new RegExp(name),
      );
    },
  });
}
