/**
 * The confined file helper against real rootfs trees: the kernel (chroot + a user namespace)
 * keeps every path inside, whatever symlinks the tree holds. Needs root (unshare --user).
 */
import assert from "node:assert/strict";
import {
  chownSync,
  existsSync,
  lstatSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { BadRequest, Conflict, NotFound, PayloadTooLarge } from "../../contract/errors.ts";
import { BASE, withRootfs } from "./rootfs_fixture.ts";

async function text(body?: ReadableStream<Uint8Array>): Promise<string> {
  assert.ok(body);
  return await new Response(body).text();
}

Deno.test("symlinks to the host's paths lead inside the container, absolute or relative", async () => {
  await withRootfs(async ({ rootfs, files, target, canary, dir }) => {
    symlinkSync(dir, join(rootfs, "abs")); // the host dir holding the canary
    symlinkSync("../../../../../..", join(rootfs, "up"));
    symlinkSync("/", join(rootfs, "etc", "root-link"));
    // The absolute host path does not exist inside; `..` stops at the container's root.
    await assert.rejects(files.get(target, "/abs/canary"), NotFound);
    assert.equal(await text((await files.get(target, "/up/etc/passwd")).body), "inside\n");
    assert.equal(
      await text((await files.get(target, "/etc/root-link/etc/passwd")).body),
      "inside\n",
    );
    // Writes through them land inside too, and the canary is untouched.
    await files.write(target, { path: "/up/tmp/x", type: "file", append: false, data: enc("w") });
    assert.equal(readFileSync(join(rootfs, "tmp", "x"), "utf8"), "w");
    await assert.rejects(
      files.write(target, { path: "/abs/canary", type: "file", append: false, data: enc("x") }),
      NotFound,
    );
    assert.equal(readFileSync(canary, "utf8"), "HOST SECRET\n");
  });
});

Deno.test("ids are the container's: a pushed uid lands shifted on disk and reads back", async () => {
  await withRootfs(async ({ rootfs, files, target }) => {
    await files.write(target, {
      path: "/root/f",
      type: "file",
      append: false,
      uid: 1000,
      gid: 1001,
      mode: 0o640,
      data: enc("data"),
    });
    const st = lstatSync(join(rootfs, "root", "f"));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [BASE + 1000, BASE + 1001, 0o640]);
    const info = await files.stat(target, "/root/f");
    assert.deepEqual([info.uid, info.gid, info.mode, info.size], [1000, 1001, 0o640, 4]);
    // A new file is the container's root's; ids beyond the map are refused before any write.
    await files.write(target, { path: "/root/g", type: "file", append: false, data: enc("") });
    assert.equal(lstatSync(join(rootfs, "root", "g")).uid, BASE);
    await assert.rejects(
      files.write(target, {
        path: "/root/h",
        type: "file",
        append: false,
        uid: 70000,
        data: enc("x"),
      }),
      (e) => e instanceof BadRequest && /outside the instance's id map/.test(e.message),
    );
    assert.equal(existsSync(join(rootfs, "root", "h")), false);
  });
});

Deno.test("write() appends, overwrites, keeps owner and mode, and makes directories", async () => {
  await withRootfs(async ({ rootfs, files, target }) => {
    const w = (data: string, append = false) =>
      files.write(target, { path: "/etc/passwd", type: "file", append, data: enc(data) });
    await w("more\n", true);
    assert.equal(readFileSync(join(rootfs, "etc", "passwd"), "utf8"), "inside\nmore\n");
    await w("new\n");
    assert.equal(readFileSync(join(rootfs, "etc", "passwd"), "utf8"), "new\n");
    assert.equal(lstatSync(join(rootfs, "etc", "passwd")).uid, BASE);
    await files.write(target, { path: "/a/b/c", type: "directory", append: false, mode: 0o700 });
    assert.equal(lstatSync(join(rootfs, "a", "b", "c")).mode & 0o7777, 0o700);
    // A streamed body of several chunks arrives whole.
    const big = new Uint8Array(3 * 2 ** 20).map((_, i) => i % 251);
    await files.write(target, {
      path: "/tmp/big",
      type: "file",
      append: false,
      data: new Blob([big]).stream(),
    });
    const back = await files.get(target, "/tmp/big");
    assert.deepEqual(new Uint8Array(await new Response(back.body).arrayBuffer()), big);
  });
});

Deno.test("write() refuses a file over a directory, a missing parent and too much data", async () => {
  await withRootfs(async ({ rootfs, files, target }) => {
    await assert.rejects(
      files.write(target, { path: "/etc", type: "file", append: false, data: enc("x") }),
      Conflict,
    );
    await assert.rejects(
      files.write(target, { path: "/no/such/f", type: "file", append: false, data: enc("x") }),
      (e) => e instanceof NotFound && /Parent directory "\/no\/such" not found/.test(e.message),
    );
    await assert.rejects(
      files.write(target, {
        path: "/tmp/limited",
        type: "file",
        append: false,
        maxBytes: 10,
        data: enc("more than ten bytes"),
      }),
      PayloadTooLarge,
    );
    assert.equal(existsSync(join(rootfs, "tmp", "limited")), false);
  });
});

Deno.test("special files are reported, never read: a FIFO does not hang, a device is refused", async () => {
  await withRootfs(async ({ rootfs, files, target }) => {
    await new Deno.Command("mkfifo", { args: [join(rootfs, "tmp", "fifo")] }).output();
    await new Deno.Command("mknod", { args: [join(rootfs, "tmp", "zero"), "c", "1", "5"] })
      .output();
    for (const p of ["/tmp/fifo", "/tmp/zero"]) {
      assert.equal((await files.stat(target, p)).type, "other");
      await assert.rejects(files.get(target, p), BadRequest);
      await assert.rejects(
        files.write(target, { path: p, type: "file", append: false, data: enc("x") }),
        BadRequest,
      );
    }
  });
});

Deno.test("stat() lists directories sorted and reports symlinks without following them", async () => {
  await withRootfs(async ({ rootfs, files, target }) => {
    symlinkSync("/etc/passwd", join(rootfs, "root", "link"));
    writeFileSync(join(rootfs, "root", "b"), "");
    const dir = await files.stat(target, "/root");
    assert.deepEqual(dir.entries, ["b", "link"]);
    const link = await files.get(target, "/root/link");
    assert.equal(link.body, undefined);
    assert.equal(link.stat.type, "symlink");
    assert.equal(link.stat.target, "/etc/passwd");
  });
});

Deno.test("a helper rooted in a directory since replaced is not reused", async () => {
  await withRootfs(async ({ rootfs, files, target, dir }) => {
    await files.write(target, { path: "/tmp/a", type: "file", append: false, data: enc("old") });
    // A restore swaps the rootfs for another tree under the same path.
    await Deno.rename(rootfs, join(dir, "old-rootfs"));
    await Deno.mkdir(join(rootfs, "tmp"), { recursive: true });
    chownSync(rootfs, BASE, BASE);
    chownSync(join(rootfs, "tmp"), BASE, BASE);
    await files.write(target, { path: "/tmp/a", type: "file", append: false, data: enc("new") });
    assert.equal(readFileSync(join(rootfs, "tmp", "a"), "utf8"), "new");
    assert.equal(readFileSync(join(dir, "old-rootfs", "tmp", "a"), "utf8"), "old");
  });
});

Deno.test("remove() takes files, symlinks and empty directories only", async () => {
  await withRootfs(async ({ rootfs, files, target }) => {
    symlinkSync("/etc", join(rootfs, "tmp", "l"));
    await files.remove(target, "/tmp/l");
    assert.equal(existsSync(join(rootfs, "etc", "passwd")), true);
    await assert.rejects(files.remove(target, "/etc"), /not empty/);
    await assert.rejects(files.remove(target, "/"), BadRequest);
    await files.remove(target, "/etc/passwd");
    await files.remove(target, "/etc");
    assert.equal(existsSync(join(rootfs, "etc")), false);
  });
});

Deno.test("a symlink swapped for a directory in a tight loop never lets a write out", async () => {
  await withRootfs(async ({ rootfs, files, target, dir, canary }) => {
    // A racer flips rootfs/tmp/d between a directory and a symlink to the host dir.
    const script = `while :; do rm -rf '${rootfs}/tmp/d'; mkdir '${rootfs}/tmp/d'; ` +
      `rmdir '${rootfs}/tmp/d'; ln -s '${dir}' '${rootfs}/tmp/d'; rm -f '${rootfs}/tmp/d'; done`;
    const racer = new Deno.Command("sh", { args: ["-c", script] }).spawn();
    try {
      for (let i = 0; i < 8; i++) {
        await files.write(target, {
          path: "/tmp/d/canary",
          type: "file",
          append: false,
          data: enc("PWNED"),
        }).catch(() => {});
        const got = await files.get(target, "/tmp/d/canary").catch(() => undefined);
        if (got?.body) assert.equal(await text(got.body), "PWNED");
        await files.remove(target, "/tmp/d/canary").catch(() => {});
      }
    } finally {
      racer.kill("SIGKILL");
      await racer.status;
    }
    assert.equal(readFileSync(canary, "utf8"), "HOST SECRET\n");
  });
});

function enc(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}
