/**
 * Copies and moves end to end on real containers: outpost's CLI and the stock lxc client. A copy
 * has the source's files (or a snapshot's), its snapshots unless --instance-only, and runs on its
 * own.
 */
import assert from "node:assert/strict";
import { HAS_LXC, sharedDaemon, StockLxc, type TestDaemon, uniqueName } from "./helpers.ts";

const daemon = sharedDaemon((d) => d.importBusybox("bb"));

async function sh(d: TestDaemon, name: string, script: string): Promise<string> {
  return await d.ok("exec", name, "--", "sh", "-c", script);
}

interface Shown {
  config: Record<string, string>;
  profiles: string[];
}

Deno.test("outpost copy copies a running container, a snapshot of it, with or without its snapshots", async () => {
  const d = await daemon();
  const [a, b, c] = [uniqueName("ca"), uniqueName("cb"), uniqueName("cc")];
  try {
    await d.ok("launch", "bb", a, "-c", "user.role=web");
    await sh(d, a, "echo then > /root/data");
    await d.ok("snapshot", "create", a, "s0");
    await sh(d, a, "echo now > /root/data");

    await d.ok("copy", a, b);
    assert.equal(await d.status(b), "Stopped");
    assert.equal(await d.status(a), "Running", "the source runs on");
    await d.ok("start", b);
    assert.equal(await sh(d, b, "cat /root/data"), "now\n");
    assert.equal(await sh(d, b, "hostname"), `${b}\n`);
    const shown = await d.api.get<Shown>(`/1.0/instances/${b}`);
    const src = await d.api.get<Shown>(`/1.0/instances/${a}`);
    assert.equal(shown.config["user.role"], "web");
    assert.notEqual(shown.config["volatile.uuid"], src.config["volatile.uuid"]);
    assert.match(await d.ok("snapshot", "list", b), /\| s0 /);
    // Independent: a change in the copy does not reach the source.
    await sh(d, b, "echo copy > /root/data");
    assert.equal(await sh(d, a, "cat /root/data"), "now\n");

    await d.ok("copy", `${a}/s0`, c, "--instance-only");
    await d.ok("start", c);
    assert.equal(await sh(d, c, "cat /root/data"), "then\n");
    assert.doesNotMatch(await d.ok("snapshot", "list", c), /s0/);

    for (
      const [args, why] of [
        [["copy", a, b], /already exists/],
        [["copy", "nope", uniqueName("x")], /Instance "nope" not found/],
        [["copy", `${a}/nope`, uniqueName("x")], /Snapshot "nope" of instance/],
        [["copy", a, "bad_name"], /Invalid instance name/],
      ] as const
    ) {
      const r = await d.cli(...args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, why);
    }
  } finally {
    await d.cli("delete", a, b, c, "--force");
  }
});

Deno.test({
  name: "the stock lxc client copies and moves (renames) a container",
  ignore: !HAS_LXC,
  async fn() {
    const d = await daemon();
    const lxc = await StockLxc.for(d);
    const [a, b, m] = [uniqueName("la"), uniqueName("lb"), uniqueName("lm")];
    try {
      await lxc.ok("launch", "bb", a);
      await sh(d, a, "echo stock > /root/data");
      await lxc.ok("copy", a, b);
      await lxc.ok("start", b);
      assert.equal(await sh(d, b, "cat /root/data"), "stock\n");
      await lxc.ok("stop", b, "--force");
      await lxc.ok("move", b, m);
      assert.equal(await d.status(b), undefined);
      await lxc.ok("start", m);
      assert.equal(await sh(d, m, "cat /root/data"), "stock\n");
    } finally {
      await d.cli("delete", a, b, m, "--force");
    }
  },
});

Deno.test("outpost publish makes an image of a stopped container or a snapshot; it launches, and exports byte for byte", async () => {
  const d = await daemon();
  const [a, b, c] = [uniqueName("pa"), uniqueName("pb"), uniqueName("pc")];
  const [img, snapImg] = [uniqueName("img"), uniqueName("simg")];
  const out = await Deno.makeTempFile({ prefix: "outpost-export-", suffix: ".tar.gz" });
  try {
    await d.ok("launch", "bb", a);
    await sh(d, a, "echo published > /root/data && chown 33:33 /root/data");
    await d.ok("snapshot", "create", a, "s0");
    const running = await d.cli("publish", a, "--alias", img);
    assert.equal(running.code, 1);
    assert.match(running.stderr, /is running: stop it first/);
    // A snapshot publishes while the instance runs.
    assert.match(await d.ok("publish", `${a}/s0`, "--alias", snapImg), /fingerprint: [0-9a-f]{64}/);
    await d.ok("stop", a, "--force");
    const published = await d.ok("publish", a, "--alias", img, "description=test image");
    const fp = /fingerprint: ([0-9a-f]{64})/.exec(published)![1];

    for (const [image, name] of [[img, b], [snapImg, c]]) {
      await d.ok("launch", image, name);
      assert.equal(await sh(d, name, "cat /root/data"), "published\n");
      // The image holds the ids the container saw: the new container sees them again.
      assert.equal(await sh(d, name, "stat -c %u:%g /root/data"), "33:33\n");
    }
    const shown = await d.api.get<{ properties: Record<string, string> }>(`/1.0/images/${fp}`);
    assert.equal(shown.properties.description, "test image");

    await d.ok("image", "export", img, out);
    const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(out)));
    assert.equal([...sum].map((x) => x.toString(16).padStart(2, "0")).join(""), fp);
  } finally {
    await d.cli("delete", a, b, c, "--force");
    await d.cli("image", "delete", img, snapImg);
    await Deno.remove(out).catch(() => {});
  }
});

Deno.test({
  name: "the stock lxc client publishes a stopped container as an image it can launch",
  ignore: !HAS_LXC,
  async fn() {
    const d = await daemon();
    const lxc = await StockLxc.for(d);
    const [a, b, alias] = [uniqueName("sa"), uniqueName("sb"), uniqueName("simg")];
    try {
      await lxc.ok("launch", "bb", a);
      await sh(d, a, "echo lxc > /root/data");
      await lxc.ok("stop", a, "--force");
      assert.match(await lxc.ok("publish", a, "--alias", alias), /fingerprint/);
      assert.match(await lxc.ok("image", "list"), new RegExp(alias));
      await lxc.ok("launch", alias, b);
      assert.equal(await sh(d, b, "cat /root/data"), "lxc\n");
    } finally {
      await d.cli("delete", a, b, "--force");
      await d.cli("image", "delete", alias);
    }
  },
});

async function sha256(d: TestDaemon, name: string, path: string): Promise<string> {
  return (await d.ok("exec", name, "--", "sha256sum", path)).split(" ")[0];
}

Deno.test("export, delete, import gives back the same files, owners and snapshots; a truncated backup makes nothing", async () => {
  const d = await daemon();
  const name = uniqueName("ex");
  const dir = await Deno.makeTempDir({ prefix: "outpost-backup-" });
  try {
    await d.ok("launch", "bb", name, "-c", "user.k=v");
    await sh(d, name, "head -c 300000 /dev/urandom > /root/blob && chown 33:33 /root/blob");
    await sh(d, name, "echo then > /root/data");
    await d.ok("snapshot", "create", name, "s0");
    await sh(d, name, "echo now > /root/data");
    const blob = await sha256(d, name, "/root/blob");
    const file = `${dir}/b.tar.gz`;
    assert.match(await d.ok("export", name, file), /exported/);
    assert.deepEqual(await d.api.get<string[]>(`/1.0/instances/${name}/backups`), []);
    await d.ok("delete", name, "--force");

    // Truncated: refused, nothing made.
    const bytes = await Deno.readFile(file);
    await Deno.writeFile(`${dir}/cut.tar.gz`, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const cut = await d.cli("import", `${dir}/cut.tar.gz`);
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, /corrupt or truncated/);
    assert.equal(await d.status(name), undefined);

    await d.ok("import", file);
    await d.ok("start", name);
    assert.equal(await sha256(d, name, "/root/blob"), blob);
    assert.equal(await sh(d, name, "stat -c %u:%g /root/blob"), "33:33\n");
    assert.equal(await sh(d, name, "cat /root/data"), "now\n");
    const shown = await d.api.get<{ config: Record<string, string> }>(`/1.0/instances/${name}`);
    assert.equal(shown.config["user.k"], "v");
    await d.ok("snapshot", "restore", name, "s0");
    assert.equal(await sh(d, name, "cat /root/data"), "then\n");
    // Under another name, beside it.
    await d.ok("import", file, `${name}b`);
    assert.equal(await d.status(`${name}b`), "Stopped");
  } finally {
    await d.cli("delete", name, `${name}b`, "--force");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "the stock lxc client exports and imports a container",
  ignore: !HAS_LXC,
  async fn() {
    const d = await daemon();
    const lxc = await StockLxc.for(d);
    const name = uniqueName("lx");
    const dir = await Deno.makeTempDir({ prefix: "outpost-backup-" });
    try {
      await lxc.ok("launch", "bb", name);
      await sh(d, name, "echo stock > /root/data");
      await lxc.ok("export", name, `${dir}/b.tar.gz`);
      await lxc.ok("delete", name, "--force");
      await lxc.ok("import", `${dir}/b.tar.gz`);
      await lxc.ok("start", name);
      assert.equal(await sh(d, name, "cat /root/data"), "stock\n");
    } finally {
      await d.cli("delete", name, "--force");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a backup that links out of its rootfs writes nothing on the host", async () => {
  const d = await daemon();
  const name = uniqueName("esc");
  const work = await Deno.makeTempDir({ prefix: "outpost-escape-" });
  const target = await Deno.makeTempDir({ prefix: "outpost-escape-target-" });
  const run = async (cmd: string, ...args: string[]) => {
    const r = await new Deno.Command(cmd, { args, stderr: "piped" }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  };
  try {
    // First a real export, then members added to it: a symlink to a host directory followed by a
    // file through it.
    await d.ok("init", "bb", name);
    await d.ok("export", name, `${work}/b.tar.gz`);
    await d.ok("delete", name);
    await run("gunzip", `${work}/b.tar.gz`);
    const rootfs = "backup/container/rootfs";
    const one = `${work}/one`;
    await Deno.mkdir(`${one}/${rootfs}`, { recursive: true });
    await Deno.symlink(target, `${one}/${rootfs}/evil`);
    await run("tar", "-rf", `${work}/b.tar`, "-C", one, `${rootfs}/evil`);
    const two = `${work}/two`;
    await Deno.mkdir(`${two}/${rootfs}/evil`, { recursive: true });
    await Deno.writeTextFile(`${two}/${rootfs}/evil/pwned`, "escaped\n");
    await run("tar", "-rf", `${work}/b.tar`, "-C", two, `${rootfs}/evil/pwned`);
    await run("gzip", `${work}/b.tar`);

    const r = await d.cli("import", `${work}/b.tar.gz`, name);
    assert.deepEqual([...Deno.readDirSync(target)], [], "nothing written through the symlink");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Invalid backup: it cannot be unpacked: .*evil\/pwned: Cannot open/);
    assert.equal(await d.status(name), undefined);
    assert.deepEqual(
      [...Deno.readDirSync(d.lxcPath)].filter((e) => e.name === name),
      [],
      "no storage left",
    );
  } finally {
    await d.cli("delete", name, "--force");
    await Deno.remove(work, { recursive: true });
    await Deno.remove(target, { recursive: true });
  }
});

Deno.test("a backup is renamed through the API; a taken or bad name is refused", async () => {
  const d = await daemon();
  const name = uniqueName("br");
  const url = `/1.0/instances/${name}/backups`;
  try {
    await d.ok("init", "bb", name);
    await d.api.run("POST", url, { body: { name: "b0" } });
    await d.api.run("POST", url, { body: { name: "b2" } });
    await d.api.run("POST", `${url}/b0`, { body: { name: "b1" } });
    assert.deepEqual((await d.api.get<string[]>(url)).sort(), [`${url}/b1`, `${url}/b2`]);
    const exported = await d.api.fetch("GET", `${url}/b1/export`);
    assert.equal(exported.status, 200);
    await exported.body?.cancel();
    const taken = await d.api.fetch("POST", `${url}/b1`, { body: { name: "b2" } });
    assert.equal(taken.status, 202, "an operation, which fails");
    const op = (await taken.json()).metadata.id;
    await assert.rejects(d.api.wait(op), /Backup "b2" of instance ".*" already exists/);
    const bad = await d.api.fetch("POST", `${url}/b1`, { body: { name: 42 } });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    const missing = await d.api.fetch("POST", `${url}/nope`, { body: { name: "x" } });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await d.cli("delete", name, "--force");
  }
});
