/**
 * End to end: the files API and `outpost file push/pull/delete` against a real daemon and a real
 * (unprivileged) busybox container; the stock LXD client too, when it is installed.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { runtimeFlags } from "../scripts/permissions.ts";
import { HAS_LXC, ROOT, StockLxc, TestDaemon, uniqueName } from "./helpers.ts";

/** `deno run` flags as the launcher (and the release binary) has them. */
const RUN_FLAGS = ["run", "--quiet", "--no-prompt", ...runtimeFlags()];

function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(size, off + 65536)));
  }
  return out;
}

/** A daemon with one running busybox container and a scratch dir for local files. */
async function withContainer(
  fn: (d: TestDaemon, name: string, local: string) => Promise<void>,
): Promise<void> {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("f");
    await d.ok("launch", "busybox", name);
    const local = await Deno.makeTempDir({ dir: d.dir, prefix: "local-" });
    await fn(d, name, local);
  } finally {
    await d.cleanup();
  }
}

/** `stat -c '%u %g %a'` inside the container. */
async function statInside(d: TestDaemon, name: string, path: string): Promise<string> {
  return (await d.ok("exec", name, "--", "stat", "-c", "%u %g %a", path)).trim();
}

function filesUrl(name: string, path?: string): string {
  const base = `/1.0/instances/${name}/files`;
  return path === undefined ? base : `${base}?path=${encodeURIComponent(path)}`;
}

Deno.test("file push/pull round-trips 1 MiB of random bytes with mode and owner, running or stopped", async () => {
  await withContainer(async (d, name, local) => {
    const blob = randomBytes(1 << 20);
    await Deno.writeFile(join(local, "blob.bin"), blob, { mode: 0o600 });

    await d.ok(
      "file",
      "push",
      "--uid",
      "1000",
      "--gid",
      "1001",
      "--mode",
      "0640",
      join(local, "blob.bin"),
      `${name}/root/blob`,
    );
    assert.equal(await statInside(d, name, "/root/blob"), "1000 1001 640");
    await d.ok("file", "pull", `${name}/root/blob`, join(local, "back.bin"));
    assert.deepEqual(await Deno.readFile(join(local, "back.bin")), blob);
    assert.equal((await Deno.stat(join(local, "back.bin"))).mode! & 0o777, 0o640);

    // On the host the file belongs to the container's shifted ids.
    const inst = await d.api.get<{ config: Record<string, string> }>(`/1.0/instances/${name}`);
    const [uidMap] = JSON.parse(inst.config["volatile.idmap.current"]);
    const onHost = lstatSync(join(d.lxcPath, name, "rootfs", "root", "blob"));
    assert.equal(onHost.uid, uidMap.Hostid + 1000);

    // Without flags the local mode and owner (root) are kept; into an existing dir by basename.
    await d.ok("file", "push", join(local, "blob.bin"), `${name}/home`);
    assert.equal(await statInside(d, name, "/home/blob.bin"), "0 0 600");

    // Text to and from stdout.
    await Deno.writeTextFile(join(local, "note.txt"), "hello from the host\n");
    await d.ok("file", "push", join(local, "note.txt"), `${name}/root/`);
    assert.equal(await d.ok("file", "pull", `${name}/root/note.txt`, "-"), "hello from the host\n");

    // A stopped container's files are reachable too.
    await d.ok("stop", name, "--force");
    await d.ok("file", "push", "--mode", "755", join(local, "note.txt"), `${name}/root/stopped`);
    await d.ok("file", "pull", `${name}/root/blob`, join(local, "stopped.bin"));
    assert.deepEqual(await Deno.readFile(join(local, "stopped.bin")), blob);
    await d.ok("start", name);
    assert.equal(await statInside(d, name, "/root/stopped"), "0 0 755");
  });
});

Deno.test("file push -r / pull -r copy a tree with modes and symlinks; delete takes it apart", async () => {
  await withContainer(async (d, name, local) => {
    const tree = join(local, "tree");
    await Deno.mkdir(join(tree, "sub"), { recursive: true });
    await Deno.mkdir(join(tree, "empty"), { mode: 0o700 });
    await Deno.chmod(join(tree, "empty"), 0o700);
    await Deno.writeTextFile(join(tree, "a.txt"), "a\n", { mode: 0o600 });
    const bin = randomBytes(100_000);
    await Deno.writeFile(join(tree, "sub", "b.bin"), bin, { mode: 0o755 });
    await Deno.symlink("../a.txt", join(tree, "sub", "link"));

    await d.ok("file", "push", "-r", "-p", tree, `${name}/srv/data/`);
    assert.equal(await statInside(d, name, "/srv/data/tree/a.txt"), "0 0 600");
    assert.equal(await statInside(d, name, "/srv/data/tree/empty"), "0 0 700");
    assert.equal(await statInside(d, name, "/srv/data/tree/sub/b.bin"), "0 0 755");
    assert.equal(
      (await d.ok("exec", name, "--", "readlink", "/srv/data/tree/sub/link")).trim(),
      "../a.txt",
    );
    assert.equal(await d.ok("exec", name, "--", "cat", "/srv/data/tree/sub/link"), "a\n");

    const out = join(local, "out");
    await d.ok("file", "pull", "-r", `${name}/srv/data/tree`, `${out}/`);
    assert.equal(await Deno.readTextFile(join(out, "tree", "a.txt")), "a\n");
    assert.deepEqual(await Deno.readFile(join(out, "tree", "sub", "b.bin")), bin);
    assert.equal(readlinkSync(join(out, "tree", "sub", "link")), "../a.txt");
    assert.equal((await Deno.stat(join(out, "tree", "empty"))).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(join(out, "tree", "sub", "b.bin"))).mode! & 0o777, 0o755);

    // Directories need -r; delete refuses a non-empty directory and the root.
    const noR = await d.cli("file", "pull", `${name}/srv/data/tree`, join(local, "x"));
    assert.equal(noR.code, 1);
    assert.match(noR.stderr, /is a directory: pass -r/);
    const notEmpty = await d.cli("file", "delete", `${name}/srv/data/tree`);
    assert.equal(notEmpty.code, 1);
    assert.match(notEmpty.stderr, /Directory "\/srv\/data\/tree" is not empty/);
    const root = await d.cli("file", "delete", `${name}/`);
    assert.match(root.stderr, /Cannot remove the root directory/);

    // The symlink goes, not its target; then files and directories, deepest first.
    await d.ok("file", "delete", `${name}/srv/data/tree/sub/link`);
    assert.equal(await d.ok("exec", name, "--", "cat", "/srv/data/tree/a.txt"), "a\n");
    await d.ok(
      "file",
      "delete",
      `${name}/srv/data/tree/sub/b.bin`,
      `${name}/srv/data/tree/sub`,
      `${name}/srv/data/tree/empty`,
      `${name}/srv/data/tree/a.txt`,
      `${name}/srv/data/tree`,
    );
    assert.equal((await d.ok("exec", name, "--", "ls", "-A", "/srv/data")).trim(), "");
    const missing = await d.cli("file", "delete", `${name}/srv/data/tree`);
    assert.match(missing.stderr, /File "\/srv\/data\/tree" not found in instance/);
  });
});

Deno.test("the files API keeps every path inside the container and answers errors clearly", async () => {
  await withContainer(async (d, name) => {
    const rootfs = join(d.lxcPath, name, "rootfs");
    const api = d.api;

    // `..` cannot climb out: this is the container's /etc/hostname, not the host's.
    const climb = await api.fetch("GET", filesUrl(name, "/../../../etc/hostname"));
    assert.equal(climb.status, 200);
    assert.equal(await climb.text(), `${name}\n`);

    // Symlinks made inside the container to /, far up, and to a host path.
    await d.ok("exec", name, "--", "ln", "-s", "/", "/root/up");
    await d.ok("exec", name, "--", "ln", "-s", "../../../../../../..", "/root/rel");
    await d.ok("exec", name, "--", "ln", "-s", d.dir, "/root/hostdir");
    const tag = crypto.randomUUID().slice(0, 8);
    for (const via of ["up", "rel"]) {
      const res = await api.fetch("POST", filesUrl(name, `/root/${via}/tmp/escape-${via}-${tag}`), {
        raw: "inside",
      });
      assert.equal(res.status, 200, await res.text());
      // It landed in the container's own /tmp (its tmpfs), not on the host.
      assert.equal(await d.ok("exec", name, "--", "cat", `/tmp/escape-${via}-${tag}`), "inside");
      assert.equal(existsSync(`/tmp/escape-${via}-${tag}`), false);
    }
    const hostWrite = await api.fetch("POST", filesUrl(name, "/root/hostdir/pwned"), { raw: "x" });
    assert.equal(hostWrite.status, 404);
    assert.match((await hostWrite.json()).error, /Parent directory ".*" not found/);
    assert.equal(existsSync(join(d.dir, "pwned")), false);
    const hostRead = await api.fetch("GET", filesUrl(name, "/root/hostdir/outpost.db"));
    assert.equal(hostRead.status, 404);
    await hostRead.body?.cancel();

    // GET of a symlink reports it (type symlink, target as body) without following it.
    const link = await api.fetch("GET", filesUrl(name, "/root/up"));
    assert.equal(link.headers.get("X-LXD-type"), "symlink");
    assert.equal(link.headers.get("X-Incus-type"), "symlink");
    assert.equal(await link.text(), "/");

    // Headers in both spellings; HEAD stats without a body.
    const head = await api.fetch("HEAD", filesUrl(name, "/etc/hostname"));
    assert.equal(head.status, 200);
    for (const p of ["X-LXD", "X-Incus"]) {
      assert.equal(head.headers.get(`${p}-type`), "file");
      assert.equal(head.headers.get(`${p}-mode`), "0644");
      assert.equal(head.headers.get(`${p}-uid`), "0");
      assert.equal(head.headers.get(`${p}-gid`), "0");
    }
    assert.equal(head.headers.get("Content-Length"), String(name.length + 1));

    // A directory is a sync envelope listing its entries.
    const dir = await api.request<string[]>("GET", filesUrl(name, "/etc"));
    assert.ok(dir.type === "sync" && dir.metadata.includes("hostname"));

    const cases: [string, string, number, RegExp, Record<string, string>?][] = [
      ["GET", filesUrl(name), 400, /Missing path/],
      ["GET", filesUrl(name, "/no/such/file"), 404, /File "\/no\/such\/file" not found/],
      ["GET", filesUrl("nosuchinstance", "/etc"), 404, /not found/],
      ["POST", filesUrl(name, "/no/such/file"), 404, /Parent directory "\/no(\/such)?" not found/],
      ["POST", filesUrl(name, "/etc"), 409, /"\/etc" is a directory/],
      ["POST", filesUrl(name, "/root/x"), 400, /Invalid file type/, { "X-LXD-type": "fifo" }],
      ["POST", filesUrl(name, "/root/x"), 400, /Invalid X-Incus-mode/, { "X-LXD-mode": "rw" }],
      ["POST", filesUrl(name, "/root/x"), 400, /outside the instance's id map/, {
        "X-Incus-uid": "70000",
      }],
      ["DELETE", filesUrl(name, "/etc"), 400, /Directory "\/etc" is not empty/],
      ["DELETE", filesUrl(name, "/no/such/file"), 404, /not found/],
    ];
    for (const [method, url, status, message, headers] of cases) {
      const res = await api.fetch(method, url, {
        raw: method === "POST" ? "data" : undefined,
        headers,
      });
      const body = await res.json();
      assert.equal(res.status, status, `${method} ${url}: ${JSON.stringify(body)}`);
      assert.equal(body.type, "error");
      assert.match(body.error, message);
    }
    assert.equal(existsSync(join(rootfs, "root", "x")), false);
  });
});

Deno.test({
  name: "the stock LXD client pushes, pulls and deletes files (recursively too)",
  ignore: !HAS_LXC,
  fn: async () => {
    await withContainer(async (d, name, local) => {
      const lxc = await StockLxc.for(d);
      const blob = randomBytes(1 << 20);
      await Deno.writeFile(join(local, "local.bin"), blob, { mode: 0o640 });

      await lxc.ok("file", "push", "-q", join(local, "local.bin"), `${name}/root/x`);
      assert.equal(await statInside(d, name, "/root/x"), "0 0 640");
      await lxc.ok("file", "pull", "-q", `${name}/root/x`, join(local, "out.bin"));
      assert.deepEqual(await Deno.readFile(join(local, "out.bin")), blob);
      await lxc.ok("file", "delete", `${name}/root/x`);
      const gone = await d.api.fetch("HEAD", filesUrl(name, "/root/x"));
      assert.equal(gone.status, 404);

      // A tree with a symlink, there and back.
      const tree = join(local, "tree");
      await Deno.mkdir(join(tree, "sub"), { recursive: true });
      await Deno.writeTextFile(join(tree, "sub", "f.txt"), "deep\n");
      await Deno.symlink("sub/f.txt", join(tree, "link"));
      await lxc.ok("file", "push", "-q", "-r", tree, `${name}/root/`);
      assert.equal(await d.ok("exec", name, "--", "cat", "/root/tree/link"), "deep\n");
      const back = join(local, "back");
      await Deno.mkdir(back);
      await lxc.ok("file", "pull", "-q", "-r", `${name}/root/tree`, back);
      assert.equal(await Deno.readTextFile(join(back, "tree", "sub", "f.txt")), "deep\n");
      assert.equal(readlinkSync(join(back, "tree", "link")), "sub/f.txt");

      const missing = await lxc.run(["file", "pull", `${name}/root/nope`, "-"]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /File "\/root\/nope" not found/);
    });
  },
});

Deno.test("a running container's own mounts are what files see: push to and pull from its tmpfs /tmp", () =>
  withContainer(async (d, name, local) => {
    assert.match(await d.ok("exec", name, "--", "grep", " /tmp ", "/proc/mounts"), /tmpfs/);
    const data = randomBytes(70_000);
    await Deno.writeFile(join(local, "t.bin"), data);
    await d.ok("file", "push", "--mode", "0600", join(local, "t.bin"), `${name}/tmp/t.bin`);
    assert.equal(
      (await d.ok("exec", name, "--", "wc", "-c", "/tmp/t.bin")).trim().split(/\s+/)[0],
      "70000",
    );
    assert.equal(await statInside(d, name, "/tmp/t.bin"), "0 0 600");
    // Nothing landed under the rootfs on the host: the tmpfs holds it.
    assert.equal(existsSync(join(d.lxcPath, name, "rootfs", "tmp", "t.bin")), false);
    await d.ok("exec", name, "--", "sh", "-c", "echo made-inside > /tmp/inside.txt");
    await d.ok("file", "pull", `${name}/tmp/inside.txt`, join(local, "inside.txt"));
    assert.equal(await Deno.readTextFile(join(local, "inside.txt")), "made-inside\n");
    await d.ok("file", "delete", `${name}/tmp/t.bin`);
    assert.notEqual((await d.cli("exec", name, "--", "test", "-e", "/tmp/t.bin")).code, 0);
  }));

Deno.test("outpost's own entry point serves the file helper (as a release binary runs it), confined", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-helper-entry-" });
  try {
    const rootfs = join(dir, "rootfs");
    await Deno.mkdir(join(rootfs, "etc"), { recursive: true });
    await Deno.writeTextFile(join(rootfs, "etc", "hostname"), "inside\n");
    await Deno.symlink(dir, join(rootfs, "escape"));
    await Deno.writeTextFile(join(dir, "secret"), "host\n");
    for (const p of ["", "etc", "etc/hostname"]) {
      await Deno.chown(join(rootfs, p), 1_300_000, 1_300_000);
    }
    await Deno.chmod(dir, 0o755);
    const child = new Deno.Command("unshare", {
      args: [
        "--user",
        "--map-users=1300000,0,65536",
        "--map-groups=1300000,0,65536",
        "--setuid",
        "0",
        "--setgid",
        "0",
        "--",
        Deno.execPath(),
        ...RUN_FLAGS,
        join(ROOT, "main.ts"),
        "__forkfile",
        JSON.stringify({ kind: "dir", path: rootfs }),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(
      '{"op":"stat","path":"/etc/hostname","maxEntries":10}\n' +
        '{"op":"stat","path":"/escape/secret","maxEntries":10}\n',
    ));
    await w.close();
    const out = await child.output();
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines[0].ok, true, new TextDecoder().decode(out.stderr));
    assert.equal(lines[1].stat.uid, 0); // the container's root, inside its user namespace
    assert.equal(lines[1].stat.size, 7);
    assert.deepEqual([lines[2].ok, lines[2].kind], [false, "NotFound"]); // the host stays out
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
