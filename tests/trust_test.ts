/**
 * End to end: the stock clients manage the trust store over the unix socket: LXD 5.0's
 * `lxc config trust add|list|show|edit|remove` and Incus 6.0's `incus config trust
 * add-certificate|list|remove`. Each client's test is skipped where it is not installed.
 */
import assert from "node:assert/strict";
import { makeCert } from "./certs.ts";
import { freePort, HAS_INCUS, HAS_LXC, sharedDaemon, StockLxc } from "./helpers.ts";

const daemon = sharedDaemon();

Deno.test({
  name: "lxc config trust adds, lists, shows, edits and removes a client certificate",
  ignore: !HAS_LXC,
  fn: async () => {
    const d = await daemon();
    const lxc = await StockLxc.for(d);
    const cert = await makeCert(d.dir, "lxd-laptop");
    const short = cert.fingerprint.slice(0, 12);
    await lxc.ok("config", "trust", "add", cert.path);
    // The client names it after the file and reads the common name from the PEM it gets back.
    assert.match(
      await lxc.ok("config", "trust", "list", "--format", "csv"),
      new RegExp(`^client,lxd-laptop\\.crt,lxd-laptop,${short},`, "m"),
    );
    const shown = await lxc.ok("config", "trust", "show", short);
    assert.match(shown, new RegExp(`^fingerprint: ${cert.fingerprint}$`, "m"));
    assert.ok(shown.includes("-----BEGIN CERTIFICATE-----"), shown);

    const dup = await lxc.run(["config", "trust", "add", cert.path]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /already trusted/);

    const edit = await lxc.run(
      ["config", "trust", "edit", short],
      "name: renamed\ntype: metrics\nrestricted: false\nprojects: []\n",
    );
    assert.equal(edit.code, 0, edit.stderr);
    assert.match(
      await lxc.ok("config", "trust", "list", "--format", "csv"),
      new RegExp(`^metrics,renamed,lxd-laptop,${short},`, "m"),
    );

    await lxc.ok("config", "trust", "remove", short);
    assert.equal(await lxc.ok("config", "trust", "list", "--format", "csv"), "");
  },
});

Deno.test({
  name: "incus config trust add-certificate, list and remove",
  ignore: !HAS_INCUS,
  fn: async () => {
    const d = await daemon();
    const incus = await StockLxc.incus(d);
    const cert = await makeCert(d.dir, "incus-laptop");
    const weak = await makeCert(d.dir, "incus-weak", "rsa1024");
    const short = cert.fingerprint.slice(0, 12);
    await incus.ok("config", "trust", "add-certificate", cert.path, "--description", "mine");
    assert.match(
      await incus.ok("config", "trust", "list", "--format", "csv"),
      new RegExp(`^incus-laptop\\.crt,client,mine,${short},`, "m"),
    );
    const refused = await incus.run(["config", "trust", "add-certificate", weak.path]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /RSA key has 1024 bits/);
    await incus.ok("config", "trust", "remove", short);
    assert.equal(await incus.ok("config", "trust", "list", "--format", "csv"), "");
  },
});

Deno.test({
  name:
    "lxc config trust add NAME issues a token once HTTPS listens, list-tokens shows it, revoke-token ends it",
  ignore: !HAS_LXC,
  fn: async () => {
    const d = await daemon();
    const lxc = await StockLxc.for(d);
    const refused = await lxc.run(["config", "trust", "add", "--name", "early"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /core\.https_address/);
    await lxc.ok("config", "set", "core.https_address", `127.0.0.1:${freePort()}`);
    try {
      const out = await lxc.ok("config", "trust", "add", "--name", "edge-laptop");
      const token = out.trim().split("\n").at(-1)!;
      assert.equal(JSON.parse(atob(token)).client_name, "edge-laptop");
      assert.match(
        await lxc.ok("config", "trust", "list-tokens", "--format", "csv"),
        new RegExp(`^edge-laptop,${token.replace(/[+/=]/g, "\\$&")},`, "m"),
      );
      await lxc.ok("config", "trust", "revoke-token", "edge-laptop");
      assert.doesNotMatch(
        await lxc.ok("config", "trust", "list-tokens", "--format", "csv"),
        /edge-laptop/,
      );
    } finally {
      await lxc.ok("config", "unset", "core.https_address");
    }
  },
});
