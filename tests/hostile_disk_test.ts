/**
 * The hostile suite, a full disk: the state dir's filesystem runs out of space under an image
 * upload, a config change and a file push. Each answers 507 with the reason, nothing half-written
 * is left, and the daemon goes on once space is back.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { busyboxTarball, TestDaemon, uniqueName } from "./helpers.ts";

/** A small tmpfs standing for a state dir's disk; unmounted (and removed) afterwards. */
async function withSmallDisk(sizeMiB: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-disk-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${sizeMiB}m,mode=0711`, "tmpfs", dir],
  }).output();
  assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
  try {
    await fn(dir);
  } finally {
    await new Deno.Command("umount", { args: ["-l", dir] }).output();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Fills the filesystem holding `dir` to the last byte. */
async function fill(dir: string): Promise<void> {
  await new Deno.Command("sh", {
    args: ["-c", `dd if=/dev/zero of='${join(dir, "filler")}' bs=64k 2>/dev/null; sync`],
  }).output();
}

Deno.test("a full disk answers 507 to an upload, a config change and a file push, and leaves nothing half-done", async () => {
  await withSmallDisk(96, async (dir) => {
    const d = await TestDaemon.start(dir);
    try {
      await d.importBusybox();
      const name = uniqueName("full");
      await d.ok("launch", "busybox", name);
      const before = await d.api.get<{ config: Record<string, string> }>(`/1.0/instances/${name}`);
      await fill(dir);

      // An image upload (a new image: the busybox tarball with bytes appended).
      const image = await Deno.readFile(await busyboxTarball());
      const upload = await d.api.fetch("POST", "/1.0/images", {
        raw: new Blob([image, new Uint8Array(4 * 2 ** 20)]),
      });
      const uploadBody = await upload.json();
      assert.equal(upload.status, 507, JSON.stringify(uploadBody));
      assert.equal(uploadBody.error_code, 507);
      assert.match(uploadBody.error, /disk/i);
      assert.deepEqual(readdirSync(join(dir, "images")).filter((f) => f.startsWith(".")), []);

      // A config change: SQLite cannot write, the record stays as it was.
      const patch = await d.api.fetch("PATCH", `/1.0/instances/${name}`, {
        body: { config: { "user.note": "x".repeat(256 * 1024) } },
      });
      const patchBody = await patch.json();
      assert.equal(patch.status, 507, JSON.stringify(patchBody));
      const after = await d.api.get<{ config: Record<string, string> }>(`/1.0/instances/${name}`);
      assert.deepEqual(after.config, before.config);

      // A file pushed into the container (its rootfs is on the same disk).
      const push = await d.api.fetch("POST", `/1.0/instances/${name}/files?path=/root/big`, {
        raw: new Uint8Array(2 * 2 ** 20),
        headers: { "X-LXD-type": "file" },
      });
      const pushBody = await push.json();
      assert.equal(push.status, 507, JSON.stringify(pushBody));

      // Space back: everything works again.
      await Deno.remove(join(dir, "filler"));
      await d.api.run("PATCH", `/1.0/instances/${name}`, { body: { config: { "user.n": "1" } } });
      assert.equal(existsSync(join(d.lxcPath, name, "rootfs")), true);
      assert.equal(await d.ok("exec", name, "--", "echo", "ok"), "ok\n");
    } finally {
      await d.cleanup();
    }
  });
});
