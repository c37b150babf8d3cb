/**
 * outpost's own CLI as a remote client, end to end: a daemon with HTTPS on loopback issues a
 * token with `outpost config trust add`, `outpost remote add` redeems it from a fresh config dir
 * (OUTPOST_CONF), and the verbs then run on `edge:` (list, launch, exec, file push/pull,
 * snapshot, info) or, after `remote switch`, on bare names. Bad tokens, a wrong fingerprint and
 * an unreachable remote are one-line errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Certificate } from "../contract/responses.ts";
import { decodeToken } from "../contract/trust_token.ts";
import {
  type CliResult,
  freePort,
  outpostArgv,
  randomBytes,
  sharedDaemon,
  type TestDaemon,
  typeInto,
  uniqueName,
} from "./helpers.ts";

let port = 0;
const daemon = sharedDaemon(async (d) => {
  port = freePort();
  await d.api.run("PATCH", "/1.0", {
    body: { config: { "core.https_address": `127.0.0.1:${port}` } },
  });
  await d.importBusybox();
});

/** A CLI user: its own config dir (client certificate, remotes), removed by `done()`. */
class User {
  private constructor(readonly d: TestDaemon, readonly conf: string) {}

  static async make(d: TestDaemon): Promise<User> {
    return new User(d, await Deno.makeTempDir({ prefix: "outpost-cli-conf-" }));
  }

  cli(...args: string[]): Promise<CliResult> {
    return this.d.cliWithEnv({ OUTPOST_CONF: this.conf }, ...args);
  }

  async ok(...args: string[]): Promise<string> {
    const r = await this.cli(...args);
    assert.equal(r.code, 0, `outpost ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  /** Runs a command that must fail with a one-line error matching `pattern` (exit code 1). */
  async fails(pattern: RegExp, ...args: string[]): Promise<void> {
    const r = await this.cli(...args);
    assert.equal(r.code, 1, `outpost ${args.join(" ")} should fail: ${r.stdout}`);
    // Progress lines ("Creating c1") may come first; the error is one last line.
    const lines = r.stderr.trim().split("\n");
    assert.deepEqual(lines.filter((l) => l.startsWith("Error: ")), [lines.at(-1)], r.stderr);
    assert.match(lines.at(-1)!, pattern);
  }

  /** Issues a token over the local socket with `config trust add`. */
  async token(name = uniqueName("client")): Promise<string> {
    const out = (await this.ok("config", "trust", "add", name)).trim().split("\n");
    assert.equal(out[0], `Client ${name} certificate add token:`);
    return out[1];
  }

  /** The trusted certificate this user's CLI made (after a remote add). */
  async fingerprint(): Promise<string> {
    const pem = await Deno.readTextFile(join(this.conf, "client.crt"));
    const certs = await this.d.api.get<Certificate[]>("/1.0/certificates?recursion=1");
    const mine = certs.find((c) => c.certificate.trim() === pem.trim());
    assert.ok(mine, "the client certificate is not trusted");
    return mine.fingerprint;
  }

  async done(): Promise<void> {
    const certs = await this.d.api.get<Certificate[]>("/1.0/certificates?recursion=1");
    const pem = await Deno.readTextFile(join(this.conf, "client.crt")).catch(() => "");
    for (const c of certs.filter((c) => pem && c.certificate.trim() === pem.trim())) {
      await this.d.api.run("DELETE", `/1.0/certificates/${c.fingerprint}`);
    }
    await Deno.remove(this.conf, { recursive: true });
  }
}

async function withUser(fn: (u: User) => Promise<void>): Promise<void> {
  const u = await User.make(await daemon());
  try {
    await fn(u);
  } finally {
    await u.done();
  }
}

Deno.test("remote add redeems a token from config trust add, and every verb then runs on edge:", async () => {
  await withUser(async (u) => {
    await u.ok("remote", "add", "edge", await u.token());
    const key = await Deno.stat(join(u.conf, "client.key"));
    assert.equal(key.mode! & 0o777, 0o600);
    assert.ok((await Deno.stat(join(u.conf, "servercerts", "edge.crt"))).isFile);
    const name = uniqueName("r");
    try {
      assert.deepEqual(
        JSON.parse(await u.ok("list", "edge:", "--format", "json")).filter(
          (i: { name: string }) => i.name === name,
        ),
        [],
      );
      await u.ok("launch", "busybox", `edge:${name}`);
      const listed = JSON.parse(await u.ok("list", "edge:", "--format", "json"));
      assert.equal(listed.find((i: { name: string }) => i.name === name)?.status, "Running");
      assert.equal((await u.cli("exec", `edge:${name}`, "--", "sh", "-c", "exit 3")).code, 3);
      assert.equal(await u.ok("exec", `edge:${name}`, "--", "echo", "edge:x"), "edge:x\n");

      const dir = await Deno.makeTempDir({ prefix: "outpost-cli-remote-files-" });
      try {
        const data = randomBytes(2 ** 20);
        await Deno.writeFile(join(dir, "big.bin"), data);
        await u.ok("file", "push", join(dir, "big.bin"), `edge:${name}/root/`);
        await u.ok("file", "pull", `edge:${name}/root/big.bin`, join(dir, "back.bin"));
        assert.deepEqual(await Deno.readFile(join(dir, "back.bin")), data);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }

      await u.ok("snapshot", "create", `edge:${name}`, "s1");
      assert.match(await u.ok("snapshot", "list", `edge:${name}`), /s1/);
      assert.match(await u.ok("info", `edge:${name}`), new RegExp(`Name: ${name}`));

      assert.equal(await u.ok("remote", "get-default"), "local\n");
      await u.ok("remote", "switch", "edge");
      assert.equal(await u.ok("remote", "get-default"), "edge\n");
      assert.match(await u.ok("list"), new RegExp(name));
      await u.ok("stop", name, "--force");
      await u.ok("remote", "switch", "local");
      assert.equal(await u.d.status(name), "Stopped");
    } finally {
      await u.cli("delete", "--force", `edge:${name}`);
    }
    assert.equal(await u.d.status(name), undefined);
  });
});

Deno.test("a reused token, a token for another server and an unreachable address are refused", async () => {
  await withUser(async (u) => {
    const token = await u.token();
    await u.ok("remote", "add", "edge", token);
    const other = await User.make(u.d);
    try {
      await other.fails(/refused the trust token/, "remote", "add", "edge", token);
      const forged = decodeToken(await other.token());
      const wrong = btoa(JSON.stringify({ ...forged, fingerprint: "0".repeat(64) }));
      await other.fails(/fingerprint .* not the token's/, "remote", "add", "edge", wrong);
      await other.fails(
        /Cannot reach https:\/\/127\.0\.0\.1:/,
        "remote",
        "add",
        "edge",
        `https://127.0.0.1:${freePort()}`,
        "--token",
        await other.token(),
      );
      await other.fails(/Invalid trust token/, "remote", "add", "edge", "garbage");
      assert.deepEqual(JSON.parse(await other.ok("remote", "list", "-f", "json")).length, 1);
    } finally {
      await other.done();
    }
  });
});

Deno.test("remote add with an address ignores the token's addresses; remote list, rename and remove", async () => {
  await withUser(async (u) => {
    const token = decodeToken(await u.token());
    const noAddress = btoa(JSON.stringify({ ...token, addresses: ["127.0.0.1:1"] }));
    await u.ok("remote", "add", "edge", `https://127.0.0.1:${port}`, "--token", noAddress);
    const rows = JSON.parse(await u.ok("remote", "list", "--format", "json"));
    assert.deepEqual(rows.map((r: { name: string }) => r.name), ["local", "edge"]);
    assert.match(await u.ok("remote", "list"), /local \(current\)/);
    assert.equal(rows[1].url, `https://127.0.0.1:${port}`);

    await u.ok("remote", "rename", "edge", "edge2");
    assert.ok((await Deno.stat(join(u.conf, "servercerts", "edge2.crt"))).isFile);
    await u.ok("list", "edge2:");
    await u.fails(/No remote "edge"/, "remote", "switch", "edge");
    await u.fails(/built in/, "remote", "remove", "local");
    await u.fails(/built in/, "remote", "rename", "local", "x");
    await u.fails(/two remotes/, "info", "local:a", "edge2:b");
    await u.ok("remote", "switch", "edge2");
    await u.fails(/is the default/, "remote", "remove", "edge2");
    await u.ok("remote", "switch", "local");
    await u.ok("remote", "remove", "edge2");
    assert.equal(JSON.parse(await u.ok("remote", "list", "-f", "json")).length, 1);
  });
});

Deno.test("a remote that cannot be reached is a one-line error", async () => {
  await withUser(async (u) => {
    await u.ok("remote", "add", "edge", await u.token());
    const cfg = JSON.parse(await Deno.readTextFile(join(u.conf, "config.yml")));
    cfg.remotes.edge.addr = `https://127.0.0.1:${freePort()}`;
    await Deno.writeTextFile(join(u.conf, "config.yml"), JSON.stringify(cfg));
    await u.fails(/Cannot reach remote "edge" at https:\/\/127\.0\.0\.1:\d+/, "list", "edge:");
  });
});

Deno.test("config trust list, list-tokens, revoke-token and remove", async () => {
  await withUser(async (u) => {
    const name = uniqueName("pending");
    const token = await u.token(name);
    const tokens = JSON.parse(await u.ok("trust", "list-tokens", "--format", "json"));
    assert.equal(tokens.find((t: { name: string }) => t.name === name)?.token, token);
    assert.match(await u.ok("config", "trust", "list-tokens"), new RegExp(name));
    await u.ok("config", "trust", "revoke-token", name);
    assert.doesNotMatch(await u.ok("config", "trust", "list-tokens"), new RegExp(name));
    await u.fails(/No trust token/, "config", "trust", "revoke-token", name);
    await u.fails(/refused the trust token/, "remote", "add", "edge", token);

    await u.ok("remote", "add", "edge", await u.token("laptop"));
    const fp = await u.fingerprint();
    const table = await u.ok("config", "trust", "list");
    assert.match(table, /NAME +\| +TYPE +\| +FINGERPRINT +\| +RESTRICTED/);
    assert.match(table, new RegExp(`${fp.slice(0, 12)} +\\| NO`));
    await u.ok("list", "edge:");
    await u.ok("config", "trust", "remove", fp.slice(0, 16));
    await u.fails(/No trusted certificate/, "config", "trust", "remove", fp);
    await u.fails(/not authorized: is this client still trusted by remote "edge"/, "list", "edge:");
  });
});

Deno.test("a restricted token makes a restricted remote client, which reads but cannot launch", async () => {
  await withUser(async (u) => {
    const name = uniqueName("viewer");
    const out = await u.ok("config", "trust", "add", name, "--restricted");
    await u.ok("remote", "add", "edge", out.trim().split("\n")[1]);
    const certs = JSON.parse(await u.ok("config", "trust", "list", "--format", "json"));
    const mine = certs.find((c: Certificate) => c.name === name);
    assert.equal(mine?.restricted, true);
    assert.deepEqual(mine?.projects, []);
    await u.ok("list", "edge:");
    await u.fails(/restricted/, "launch", "busybox", `edge:${uniqueName("no")}`);
    await u.fails(/Only the "default" project/, "trust", "add", "x", "--projects", "other");
    await u.fails(/Unknown certificate type/, "config", "trust", "add", "x", "--type", "admin");
  });
});

Deno.test("on edge:, exec from a terminal runs on a PTY of its size, and console attaches and detaches on ctrl+a q", async () => {
  await withUser(async (u) => {
    await u.ok("remote", "add", "edge", await u.token());
    const name = uniqueName("p");
    await u.ok("launch", "busybox", `edge:${name}`);
    try {
      const env = { OUTPOST_CONF: u.conf, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
      // No daemon is local: only the remote can answer.
      const cli = [...outpostArgv(), "--state-dir", "/nonexistent-outpost-state"]
        .map((a) => `'${a}'`).join(" ");
      const tty = await typeInto(
        `stty cols 100 rows 30; ${cli} exec edge:${name} -- sh`,
        "stty size; tty; exit 7\r",
        env,
      );
      assert.equal(tty.code, 7, tty.stdout + tty.stderr);
      assert.match(tty.stdout, /30 100/);
      assert.match(tty.stdout, /\/dev\/pts\/\d+/);
      const con = await typeInto(
        `${cli} console edge:${name}`,
        "\r echo HELLO-$((2*21)); tty\r\x01q",
        env,
        2000,
      );
      assert.equal(con.code, 0, con.stderr);
      assert.match(con.stdout, /HELLO-42/);
      assert.match(con.stdout, /\/dev\/console/);
    } finally {
      await u.cli("delete", "--force", `edge:${name}`);
    }
  });
});

Deno.test("outpost monitor edge: streams the remote's lifecycle events over HTTPS", async () => {
  await withUser(async (u) => {
    await u.ok("remote", "add", "edge", await u.token());
    const name = uniqueName("m");
    await u.ok("launch", "busybox", `edge:${name}`);
    try {
      const monitor = new Deno.Command(outpostArgv()[0], {
        args: [
          ...outpostArgv().slice(1),
          // No daemon is local: only the remote can answer.
          "--state-dir",
          "/nonexistent-outpost-state",
          "monitor",
          "edge:",
          "--type",
          "lifecycle",
          "--format",
          "json",
          "--count",
          "2",
        ],
        env: { OUTPOST_CONF: u.conf },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await new Promise((r) => setTimeout(r, 1500));
      await u.ok("pause", `edge:${name}`);
      await u.ok("resume", `edge:${name}`);
      const out = await monitor.output();
      const events = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      assert.deepEqual(events.map((e) => e.metadata.action), [
        "instance-paused",
        "instance-resumed",
      ]);
    } finally {
      await u.cli("delete", "--force", `edge:${name}`);
    }
  });
});

Deno.test("remote add --accept-certificate pins the server for a client it already trusts (config trust add-certificate), and is refused otherwise", async () => {
  await withUser(async (u) => {
    const url = `https://127.0.0.1:${port}`;
    await u.fails(
      /does not trust this client yet/,
      "remote",
      "add",
      "edge",
      url,
      "--accept-certificate",
    );
    assert.equal(JSON.parse(await u.ok("remote", "list", "-f", "json")).length, 1);
    const pem = await u.ok("remote", "get-client-certificate");
    assert.match(pem, /^-----BEGIN CERTIFICATE-----/);
    const file = join(u.conf, "me.crt");
    await Deno.writeTextFile(file, pem);
    await u.ok("config", "trust", "add-certificate", file, "--name", "by-hand");
    const added = await u.cli("remote", "add", "edge", url, "--accept-certificate");
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stderr, /Certificate fingerprint: [0-9a-f]{64}/);
    assert.ok((await Deno.stat(join(u.conf, "servercerts", "edge.crt"))).isFile);
    await u.ok("list", "edge:");
    const certs = JSON.parse(await u.ok("config", "trust", "list", "-f", "json"));
    const mine = certs.find((c: { name: string }) => c.name === "by-hand");
    await u.ok("config", "trust", "remove", mine.fingerprint);
    await u.fails(/trust/, "list", "edge:");
  });
});
