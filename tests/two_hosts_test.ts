/**
 * Remote control between two hosts: the daemon in a server network namespace listening on its
 * veth address, the stock clients in a client namespace reaching it over the veth pair. Tokens
 * are issued on the server (its unix socket) and redeemed from the client.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeCert } from "./certs.ts";
import {
  cliInNetns,
  type CliResult,
  HAS_INCUS,
  HAS_LXC,
  issueTrustToken,
  randomBytes,
  StockLxc,
  TestDaemon,
  uniqueName,
} from "./helpers.ts";
import { HAS_NETNS, type TwoHosts, twoHosts } from "./netns.ts";

const PORT = 8443;
let setup: Promise<{ hosts: TwoHosts; d: TestDaemon }> | undefined;

/** The two hosts and the daemon on the server, made by the first test that needs them. */
function world(): Promise<{ hosts: TwoHosts; d: TestDaemon }> {
  setup ??= (async () => {
    const hosts = await twoHosts();
    try {
      const d = await TestDaemon.start(undefined, { netns: hosts.server });
      try {
        await d.api.run("PATCH", "/1.0", {
          body: { config: { "core.https_address": `${hosts.serverIp}:${PORT}` } },
        });
        await d.importBusybox();
        return { hosts, d };
      } catch (err) {
        await d.cleanup();
        throw err;
      }
    } catch (err) {
      await hosts.cleanup();
      throw err;
    }
  })();
  return setup;
}

Deno.test.afterAll(async () => {
  const w = await setup?.catch(() => undefined);
  await w?.d.cleanup();
  await w?.hosts.cleanup();
});

/** A trust token issued on the server. */
async function token(d: TestDaemon): Promise<string> {
  return (await issueTrustToken(d)).token;
}

/** curl run on the client host; answers the HTTP status and the body. */
async function curl(
  hosts: TwoHosts,
  path: string,
  opts: { from?: string; cert?: string; method?: string } = {},
): Promise<{ code: number; body: string }> {
  const args = ["netns", "exec", hosts.client, "curl", "-sk", "-X", opts.method ?? "GET"];
  if (opts.from) args.push("--interface", opts.from);
  if (opts.cert) args.push("--cert", opts.cert, "--key", opts.cert.replace(/\.crt$/, ".key"));
  args.push("-w", "\n%{http_code}", `https://${hosts.serverIp}:${PORT}${path}`);
  const out = await new Deno.Command("ip", { args, stdout: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  const at = text.lastIndexOf("\n");
  return { code: Number(text.slice(at + 1)), body: text.slice(0, at) };
}

for (const binary of ["lxc", "incus"] as const) {
  Deno.test({
    name:
      `${binary} on the client host redeems a token, launches, execs with an exit code, pushes and pulls 1 MiB byte-identical, deletes`,
    ignore: !HAS_NETNS || (binary === "lxc" ? !HAS_LXC : !HAS_INCUS),
    fn: async () => {
      const { hosts, d } = await world();
      const client = binary === "lxc" ? await StockLxc.for(d) : await StockLxc.incus(d);
      client.netns = hosts.client;
      await client.ok("remote", "add", "edge", await token(d));
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
          "echo far; exit 5",
        ]);
        assert.deepEqual([exec.code, exec.stdout], [5, "far\n"]);
        const local = join(client.home, "blob");
        const back = join(client.home, "blob.back");
        const data = randomBytes(2 ** 20);
        await Deno.writeFile(local, data);
        await client.ok("file", "push", local, `edge:${name}/root/blob`);
        await client.ok("file", "pull", `edge:${name}/root/blob`, back);
        assert.deepEqual(await Deno.readFile(back), data);
      } finally {
        await client.run(["delete", "-f", `edge:${name}`]);
      }
    },
  });
}

/** The outpost CLI run on the client host, with its config (key pair, remotes) in `conf`. */
function outpost(hosts: TwoHosts, conf: string, ...args: string[]): Promise<CliResult> {
  return cliInNetns(hosts.client, conf, ...args);
}

Deno.test({
  name:
    "outpost on the client host adds the server with a token, then launches, execs with an exit code, pushes and pulls 1 MiB byte-identical, deletes",
  ignore: !HAS_NETNS,
  fn: async () => {
    const { hosts, d } = await world();
    const conf = await Deno.makeTempDir({ prefix: "outpost-2h-conf-", dir: d.dir });
    const ok = async (...args: string[]) => {
      const r = await outpost(hosts, conf, ...args);
      assert.equal(r.code, 0, `outpost ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    await ok("remote", "add", "edge", await token(d));
    const name = uniqueName("o");
    await ok("launch", "busybox", `edge:${name}`);
    try {
      assert.match(await ok("list", "edge:"), new RegExp(name));
      const exec = await outpost(hosts, conf, "exec", `edge:${name}`, "--", "sh", "-c", "exit 9");
      assert.equal(exec.code, 9);
      const data = randomBytes(2 ** 20);
      await Deno.writeFile(join(conf, "blob"), data);
      await ok("file", "push", join(conf, "blob"), `edge:${name}/root/blob`);
      await ok("file", "pull", `edge:${name}/root/blob`, join(conf, "back"));
      assert.deepEqual(await Deno.readFile(join(conf, "back")), data);
    } finally {
      await outpost(hosts, conf, "delete", "-f", `edge:${name}`);
    }
  },
});

Deno.test({
  name: "a token redeemed once is refused to a second client on the client host",
  ignore: !HAS_NETNS || !HAS_LXC,
  fn: async () => {
    const { hosts, d } = await world();
    const t = await token(d);
    const first = await StockLxc.for(d);
    const second = await StockLxc.for(d);
    first.netns = second.netns = hosts.client;
    await first.ok("remote", "add", "edge", t);
    const again = await second.run(["remote", "add", "edge", t]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /No matching trust token/);
  },
});

Deno.test({
  name:
    "an untrusted client on the client host gets GET /1.0 and 403 elsewhere, then 429 after 30 refusals; a trusted one from the same address is still served",
  ignore: !HAS_NETNS,
  fn: async () => {
    const { hosts, d } = await world();
    // An address of its own, so the hold-off touches no other test.
    const from = hosts.clientIp.replace(/\.2$/, ".3");
    const dev = `opc${hosts.client.slice(5)}`;
    const add = ["netns", "exec", hosts.client, "ip", "addr", "add", `${from}/24`, "dev", dev];
    assert.ok((await new Deno.Command("ip", { args: add }).output()).success);
    const untrusted = await curl(hosts, "/1.0", { from });
    assert.equal(untrusted.code, 200);
    assert.equal(JSON.parse(untrusted.body).metadata.auth, "untrusted");
    const codes: number[] = [];
    for (let i = 0; i < 32; i++) codes.push((await curl(hosts, "/1.0/instances", { from })).code);
    assert.deepEqual(codes.slice(0, 30), Array(30).fill(403));
    assert.deepEqual(codes.slice(30), [429, 429]);
    assert.equal((await curl(hosts, "/1.0", { from })).code, 429);
    const dir = await Deno.makeTempDir({ prefix: "outpost-2h-", dir: d.dir });
    const cert = await makeCert(dir, "trusted");
    await d.api.run("POST", "/1.0/certificates", { body: { certificate: cert.base64 } });
    assert.equal((await curl(hosts, "/1.0/instances", { from, cert: cert.path })).code, 200);
    const audit = await Deno.readTextFile(join(d.dir, "audit.log"));
    assert.match(audit, /"who":"unix","method":"POST","path":"\/1.0\/certificates","status":201/);
  },
});
