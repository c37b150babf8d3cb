import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { buildBusyboxImage, isStaticElf, parseBusyboxVersion } from "./busybox.ts";

async function tar(args: string[]): Promise<string> {
  const out = await new Deno.Command("tar", { args, stdout: "piped", stderr: "piped" }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** `tar -tzvf` lines keyed by the entry's path (without a trailing slash or link target). */
function listing(out: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const line of out.split("\n").filter(Boolean)) {
    const fields = line.split(/\s+/);
    const name = fields.slice(5).join(" ").split(" -> ")[0].replace(/\/$/, "");
    entries.set(name, line);
  }
  return entries;
}

Deno.test("buildBusyboxImage() writes a unified image with metadata and a bootable rootfs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-busybox-test-" });
  try {
    const outFile = join(dir, "busybox.tar.gz");
    const built = await buildBusyboxImage({ outFile });
    assert.equal(built.file, outFile);
    assert.equal(built.os, "busybox");
    assert.match(built.release, /^\d+\.\d+/);
    assert.ok(!(await exists(`${outFile}.tmp`)));

    const metadata = parse(await tar(["-xzOf", outFile, "metadata.yaml"]));
    assert.equal(metadata.properties.os, "busybox");
    assert.match(metadata.properties.release, /^\d+\.\d+/);
    assert.equal(metadata.properties.description, `BusyBox ${built.release} static`);
    assert.equal(metadata.architecture, built.architecture);
    assert.equal(typeof metadata.creation_date, "number");
    assert.deepEqual(metadata.templates, {});

    const entries = listing(await tar(["--numeric-owner", "-tzvf", outFile]));
    assert.ok(entries.has("metadata.yaml"));
    assert.match(entries.get("rootfs/sbin/init") ?? "", /^l.* -> \/bin\/busybox$/);
    assert.match(entries.get("rootfs/bin/sh") ?? "", /^l/);
    assert.match(entries.get("rootfs/bin/busybox") ?? "", /^-rwxr-xr-x /);
    assert.match(entries.get("rootfs/tmp") ?? "", /^drwxrwxrwt /);
    assert.match(entries.get("rootfs/root") ?? "", /^drwx------ /);
    assert.match(entries.get("rootfs/var/run") ?? "", /^l.* -> \.\.\/run$/);
    assert.match(entries.get("rootfs/etc/init.d/rcS") ?? "", /^-rwxr-xr-x /);
    assert.match(entries.get("rootfs/etc/udhcpc/default.script") ?? "", /^-rwxr-xr-x /);
    for (const line of entries.values()) assert.match(line, /^\S+ 0\/0 /);

    const inittab = await tar(["-xzOf", outFile, "rootfs/etc/inittab"]);
    assert.match(inittab, /^::sysinit:\/etc\/init\.d\/rcS$/m);
    assert.match(inittab, /^console::askfirst:-\/bin\/sh$/m);
    assert.doesNotMatch(inittab, /getty/);
    const rcS = await tar(["-xzOf", outFile, "rootfs/etc/init.d/rcS"]);
    assert.match(rcS, /^#!\/bin\/sh/);
    assert.match(rcS, /\/sys\/class\/net\/eth0/);
    const passwd = await tar(["-xzOf", outFile, "rootfs/etc/passwd"]);
    assert.match(passwd, /^root:x:0:0:root:\/root:\/bin\/sh$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildBusyboxImage() refuses a dynamically linked busybox and leaves no file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-busybox-test-" });
  try {
    const outFile = join(dir, "busybox.tar.gz");
    await assert.rejects(
      buildBusyboxImage({ outFile, busybox: "/bin/ls" }),
      /No static busybox/,
    );
    assert.ok(!(await exists(outFile)));
    assert.ok(!(await exists(`${outFile}.tmp`)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("isStaticElf() tells a static binary from a dynamic one and a non-ELF file", async () => {
  assert.equal(await isStaticElf("/bin/busybox"), true);
  assert.equal(await isStaticElf("/bin/ls"), false);
  assert.equal(await isStaticElf("/etc/hostname"), false);
  assert.equal(await isStaticElf("/nonexistent/busybox"), false);
});

Deno.test("parseBusyboxVersion() reads the version from the banner's first line", () => {
  assert.equal(
    parseBusyboxVersion("BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary.\n..."),
    "1.35.0",
  );
  assert.throws(() => parseBusyboxVersion("not busybox"), /Cannot read the busybox version/);
});
