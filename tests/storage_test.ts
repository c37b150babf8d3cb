/**
 * Storage pools and custom volumes end to end: a real daemon, real LXC containers, a btrfs pool
 * on a loop file the daemon makes, a dir pool in a directory of the test's, custom volumes
 * mounted into unprivileged containers, and the stock LXD client's storage commands.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { HAS_LXC, sharedDaemon, StockLxc, type TestDaemon, uniqueName } from "./helpers.ts";

const daemon = sharedDaemon((d) => d.importBusybox("bb"));

const mountinfo = () => Deno.readTextFile("/proc/self/mountinfo");
/** The filesystem type mounted exactly at `path`, if anything is. */
async function mountedAt(path: string): Promise<string | undefined> {
  for (const line of (await mountinfo()).split("\n")) {
    if (line.split(" ")[4] === path) return line.split(" - ")[1]?.split(" ")[0];
  }
  return undefined;
}

async function fingerprint(d: TestDaemon, alias: string): Promise<string> {
  return (await d.api.get<{ target: string }>(`/1.0/images/aliases/${alias}`)).target;
}

function test(name: string, fn: () => Promise<void>) {
  Deno.test({ name, ignore: !HAS_LXC, fn });
}

test("a btrfs pool on a loop file: containers are snapshots of the image's volume, and delete leaves nothing", async () => {
  const d = await daemon();
  const pool = uniqueName("fast");
  const [a, b] = [uniqueName("ba"), uniqueName("bb")];
  const poolDir = join(d.dir, "storage-pools", pool);
  const loopFile = join(d.dir, "disks", `${pool}.img`);
  try {
    await d.ok("storage", "create", pool, "btrfs", "size=1GiB");
    assert.equal(await mountedAt(poolDir), "btrfs");
    assert.equal((await Deno.stat(loopFile)).size, 2 ** 30);
    assert.match(await d.ok("storage", "list"), new RegExp(`\\| ${pool} +\\| btrfs +\\|`));

    await d.ok("launch", "bb", a, "-s", pool);
    await d.ok("launch", "bb", b, "-s", pool);
    // The instances' storage is on the pool; each rootfs a btrfs subvolume (inode 256), cloned
    // from the image unpacked once on the pool.
    const fp = await fingerprint(d, "bb");
    assert.ok(existsSync(join(poolDir, "images", fp, "rootfs", "bin", "busybox")));
    for (const n of [a, b]) {
      assert.equal(await Deno.realPath(join(d.lxcPath, n)), join(poolDir, "containers", n));
      assert.equal((await Deno.stat(join(poolDir, "containers", n, "rootfs"))).ino, 256);
    }
    await d.ok("exec", a, "--", "sh", "-c", "echo from-a > /root/f");
    assert.equal((await d.ok("exec", a, "--", "cat", "/root/f")).trim(), "from-a");
    assert.equal((await d.cli("exec", b, "--", "cat", "/root/f")).code, 1, "clones share nothing");

    // Snapshot, restore and copy work on the pool's storage.
    await d.ok("snapshot", "create", a, "s1");
    await d.ok("exec", a, "--", "sh", "-c", "echo changed > /root/f");
    await d.ok("stop", a, "--force");
    await d.ok("snapshot", "restore", a, "s1");
    await d.ok("start", a);
    assert.equal((await d.ok("exec", a, "--", "cat", "/root/f")).trim(), "from-a");

    const volumes = await d.ok("storage", "volume", "list", pool);
    assert.match(volumes, new RegExp(`\\| container +\\| ${a} +\\|`));
    assert.match(volumes, new RegExp(`\\| image +\\| ${fp} +\\|`));

    const inUse = await d.cli("storage", "delete", pool);
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, /is in use by \/1\.0\/instances\//);
    // An instance's root disk cannot move to another pool by an edit.
    const moved = await d.cli("config", "device", "set", a, "root", "pool=default");
    assert.equal(moved.code, 1);
    assert.match(moved.stderr, /moving an instance's storage to another pool is not supported/);

    await d.ok("delete", a, "--force");
    await d.ok("delete", b, "--force");
    assert.ok(!existsSync(join(d.lxcPath, a)) && !existsSync(join(poolDir, "containers", a)));
    await d.ok("storage", "delete", pool);
    assert.equal(await mountedAt(poolDir), undefined);
    assert.ok(!existsSync(loopFile) && !existsSync(poolDir));
    assert.equal((await d.cli("storage", "show", pool)).code, 1);
  } finally {
    await d.cli("delete", a, "--force");
    await d.cli("delete", b, "--force");
    await d.cli("storage", "delete", pool);
  }
});

test("a btrfs pool on a directory of a btrfs filesystem the host has", async () => {
  const d = await daemon();
  const pool = uniqueName("onfs");
  const name = uniqueName("bf");
  const work = await Deno.makeTempDir({ prefix: "outpost-test-btrfs-" });
  const run = async (cmd: string, ...args: string[]) => {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    assert.equal(r.code, 0, `${cmd}: ${new TextDecoder().decode(r.stderr)}`);
  };
  const mnt = join(work, "mnt");
  try {
    // The host's own btrfs (here a loop file the test makes, as a host would have a disk).
    const img = join(work, "fs.img");
    await Deno.writeFile(img, new Uint8Array());
    await Deno.truncate(img, 512 * 2 ** 20);
    await run("mkfs.btrfs", "-q", img);
    await Deno.mkdir(mnt);
    await run("mount", "-o", "loop", img, mnt);
    await Deno.chmod(work, 0o711);
    await Deno.mkdir(join(mnt, "pool"));
    await d.ok("storage", "create", pool, "btrfs", `source=${mnt}/pool`);
    assert.equal(await mountedAt(join(d.dir, "storage-pools", pool)), undefined, "no loop file");
    await d.ok("launch", "bb", name, "-s", pool);
    assert.equal((await Deno.stat(join(mnt, "pool", "containers", name, "rootfs"))).ino, 256);
    assert.equal((await d.ok("exec", name, "--", "echo", "on-btrfs")).trim(), "on-btrfs");
    await d.ok("delete", name, "--force");
    await d.ok("storage", "delete", pool);
    assert.ok(!existsSync(join(mnt, "pool")), "the pool's directory goes with it");
  } finally {
    await d.cli("delete", name, "--force");
    await d.cli("storage", "delete", pool);
    // The filesystem may still be busy for a moment after the container went: retried, then lazy.
    for (let i = 0; i < 20; i++) {
      const r = await new Deno.Command("umount", { args: [mnt], stderr: "null" }).output();
      if (r.success || !(await mountedAt(mnt))) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (await mountedAt(mnt)) {
      await new Deno.Command("umount", { args: ["-l", mnt], stderr: "null" }).output();
    }
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});

test("a dir pool elsewhere, and bad pools refused with nothing made", async () => {
  const d = await daemon();
  const pool = uniqueName("plain");
  const name = uniqueName("dp");
  const source = join(d.dir, "..", `${uniqueName("outpost-test-pool")}`);
  const links: string[] = [];
  try {
    await d.ok("storage", "create", pool, "dir", `source=${source}`);
    await d.ok("launch", "bb", name, "-s", pool);
    assert.equal(await Deno.realPath(join(d.lxcPath, name)), join(source, "containers", name));
    await d.ok("exec", name, "--", "sh", "-c", "echo hi > /root/f");
    assert.ok(existsSync(join(source, "containers", name, "rootfs", "root", "f")));
    await d.ok("delete", name, "--force");
    await d.ok("storage", "delete", pool);
    assert.ok(!existsSync(source));

    // A symlink that leads into the state directory is seen through.
    const link = join(source, "..", uniqueName("outpost-test-link"));
    await Deno.symlink(d.dir, link);
    links.push(link);
    const refused: [string[], RegExp][] = [
      [["zfs"], /driver "zfs" is not supported/],
      [["dir", "source=relative"], /expected an absolute directory/],
      [["dir", `source=${d.dir}/x`], /cannot be the state directory, inside it or above it/],
      [["dir", "source=/"], /cannot be the state directory, inside it or above it/],
      [["dir", `source=${link}/x`], /cannot be the state directory, inside it or above it/],
      [["dir", "size=1GiB"], /"size" is for a btrfs pool/],
      [["btrfs", "size=1MiB"], /between 256MiB/],
      [["btrfs", `source=${d.dir}/..`], /cannot be the state directory|not on btrfs/],
      [["dir", "bogus=1"], /Unknown storage pool key "bogus"/],
    ];
    for (const [args, why] of refused) {
      const r = await d.cli("storage", "create", uniqueName("bad"), ...args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, why);
    }
    const badName = await d.api.fetch("POST", "/1.0/storage-pools", {
      body: { name: "a/b", driver: "dir", config: {} },
    });
    assert.equal(badName.status, 400);
    await badName.body?.cancel();
    assert.equal((await d.cli("storage", "delete", "default")).code, 1);
    assert.deepEqual(
      await d.api.get<string[]>("/1.0/storage-pools"),
      ["/1.0/storage-pools/default"],
    );
    assert.deepEqual(
      [...Deno.readDirSync(join(d.dir, "storage-pools"))].map((e) => e.name),
      [],
    );
  } finally {
    await d.cli("delete", name, "--force");
    await d.cli("storage", "delete", pool);
    await Deno.remove(source, { recursive: true }).catch(() => {});
    for (const l of links) await Deno.remove(l).catch(() => {});
  }
});

test("a custom volume: mounted into an unprivileged container as its own, kept across instances, in use until detached", async () => {
  const d = await daemon();
  const vol = uniqueName("data");
  const [a, b] = [uniqueName("va"), uniqueName("vb")];
  const volDir = join(d.dir, "custom-volumes", vol);
  try {
    await d.ok("storage", "volume", "create", "default", vol);
    await d.ok("init", "bb", a);
    await d.ok("storage", "volume", "attach", "default", vol, a, "/data");
    await d.ok("start", a);
    await d.ok("exec", a, "--", "sh", "-c", "echo kept > /data/f && chown 1000:1000 /data/f");
    // The container's root and uid 1000 are the volume's owners as the container sees them, and
    // the files on the host carry the container's own ids (shifted by the idmapped mount).
    assert.match(await d.ok("exec", a, "--", "ls", "-ln", "/data"), /1000 +1000 .* f/);
    const st = await Deno.stat(join(volDir, "f"));
    assert.deepEqual([st.uid, st.gid], [1000, 1000]);
    // Files there carry ids of host users (root's too): no host user but root and the containers'
    // root group may reach the volumes.
    const parent = await Deno.stat(join(d.dir, "custom-volumes"));
    assert.equal(parent.mode! & 0o777, 0o710);
    assert.equal(parent.uid, 0);
    assert.notEqual(parent.gid, 0);
    const nobody = await new Deno.Command("setpriv", {
      args: ["--reuid=65534", "--regid=65534", "--clear-groups", "cat", join(volDir, "f")],
      stderr: "piped",
    }).output();
    assert.notEqual(nobody.code, 0, "a host user reached a volume's file");

    const used = await d.cli("storage", "volume", "delete", "default", vol);
    assert.equal(used.code, 1);
    assert.match(used.stderr, /is in use by .*detach it first/);
    const shown = await d.api.get<{ used_by: string[]; content_type: string }>(
      `/1.0/storage-pools/default/volumes/custom/${vol}`,
    );
    assert.deepEqual(shown.used_by, [`/1.0/instances/${a}`]);
    assert.equal(shown.content_type, "filesystem");

    await d.ok("delete", a, "--force");
    await d.ok("init", "bb", b);
    await d.ok("storage", "volume", "attach", "default", vol, b, "data", "/mnt/data");
    await d.ok("config", "device", "set", b, "data", "readonly=true");
    await d.ok("start", b);
    assert.equal((await d.ok("exec", b, "--", "cat", "/mnt/data/f")).trim(), "kept");
    assert.equal((await d.cli("exec", b, "--", "touch", "/mnt/data/g")).code, 1, "read-only");

    // Bad attachments are refused naming the problem.
    const missing = await d.cli("storage", "volume", "attach", "default", "nope", b, "/x");
    assert.match(missing.stderr, /custom volume "nope" does not exist in pool "default"/);
    const dup = await d.cli("storage", "volume", "create", "default", vol);
    assert.match(dup.stderr, /already exists/);
    const sized = await d.cli(
      "storage",
      "volume",
      "create",
      "default",
      uniqueName("s"),
      "size=1GiB",
    );
    assert.match(sized.stderr, /"size" is for block volumes/);
    const huge = await d.cli(
      "storage",
      "volume",
      "create",
      "default",
      uniqueName("h"),
      "--type",
      "block",
      "size=1EiB",
    );
    assert.match(huge.stderr, /larger than pool "default"'s filesystem/);

    await d.ok("stop", b, "--force");
    await d.ok("storage", "volume", "detach", "default", vol, b);
    await d.ok("storage", "volume", "delete", "default", vol);
    assert.ok(!existsSync(volDir));
  } finally {
    await d.cli("delete", a, "--force");
    await d.cli("delete", b, "--force");
    await d.cli("storage", "volume", "delete", "default", vol);
  }
});

test("the stock lxc client creates a pool and a volume, attaches it and launches on the pool", async () => {
  const d = await daemon();
  const lxc = await StockLxc.for(d);
  const pool = uniqueName("lp");
  const vol = uniqueName("lv");
  const name = uniqueName("lc");
  try {
    await lxc.ok("storage", "create", pool, "dir");
    assert.match(await lxc.ok("storage", "list"), new RegExp(`\\| ${pool} +\\| dir +\\|`));
    await lxc.ok("storage", "volume", "create", pool, vol);
    await lxc.ok("init", "bb", name, "-s", pool);
    await lxc.ok("storage", "volume", "attach", pool, vol, name, "/srv");
    await lxc.ok("start", name);
    await d.ok("exec", name, "--", "sh", "-c", "echo via-lxc > /srv/f");
    assert.equal((await d.ok("exec", name, "--", "cat", "/srv/f")).trim(), "via-lxc");
    assert.match(await lxc.ok("storage", "volume", "list", pool), new RegExp(vol));
    await lxc.ok("delete", name, "--force");
    await lxc.ok("storage", "volume", "delete", pool, vol);
    await lxc.ok("storage", "delete", pool);
    assert.equal((await d.cli("storage", "show", pool)).code, 1);
  } finally {
    await d.cli("delete", name, "--force");
    await d.cli("storage", "volume", "delete", pool, vol);
    await d.cli("storage", "delete", pool);
  }
});
