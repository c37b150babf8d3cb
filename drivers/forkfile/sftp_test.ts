/**
 * The helper in SFTP mode against a real rootfs, rooted and in a user namespace as for a stopped
 * unprivileged container: OpenSSH's own sftp client drives it (`sftp -D`, the server on stdio),
 * and ConfinedFiles.sftp() hands out its channel. Needs root and /usr/bin/sftp.
 */
import assert from "node:assert/strict";
import { lstatSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Conflict, NotFound } from "../../contract/errors.ts";
import { concatBytes } from "../../contract/bytes.ts";
import type { SftpChannel } from "../files.ts";
import { type ConfinedTarget, helperCommand, MAX_SFTP_SESSIONS } from "./client.ts";
import { SFTP_MODE } from "./protocol.ts";
import { BASE, withRootfs } from "./rootfs_fixture.ts";
import { FX, FXP, Reader, Writer } from "./sftp_wire.ts";

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The helper's argv for `target`, in SFTP mode. */
function argv(workDir: string, target: ConfinedTarget): string[] {
  return [...target.enter, ...helperCommand(workDir), SFTP_MODE, JSON.stringify(target.root)];
}

/**
 * A server program for `sftp -D`: the helper, its rooted line dropped (bash reads a pipe a byte
 * at a time, so nothing of the SFTP stream is lost).
 */
function serverScript(dir: string, workDir: string, target: ConfinedTarget): string {
  const path = join(dir, "sftp-server");
  writeFileSync(
    path,
    `#!/bin/bash\nexport DENO_DIR=${quote(join(workDir, "cache"))} NO_COLOR=1\n` +
      `${argv(workDir, target).map(quote).join(" ")} | { read -r _; exec cat; }\n`,
    { mode: 0o755 },
  );
  return path;
}

async function sftpBatch(server: string, dir: string, lines: string[]) {
  const batch = join(dir, "batch");
  writeFileSync(batch, lines.join("\n") + "\n");
  const out = await new Deno.Command("sftp", {
    args: ["-D", server, "-b", batch],
    stdin: "null",
    signal: AbortSignal.timeout(15_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

Deno.test("OpenSSH's sftp pushes and pulls 1 MiB byte for byte, lists, renames, links, removes", async () => {
  await withRootfs(async ({ dir, rootfs, workDir, target }) => {
    const big = randomBytes(1 << 20);
    writeFileSync(join(dir, "big"), big);
    const server = serverScript(dir, workDir, target);
    const { code, text } = await sftpBatch(server, dir, [
      "cd /root",
      `put ${join(dir, "big")} big`,
      `get big ${join(dir, "big.back")}`,
      "mkdir d",
      "rename big d/big2",
      "ln -s /etc/passwd pw",
      `get pw ${join(dir, "pw.back")}`,
      "ls -l /root/d",
      "ls -l /root",
      "rm d/big2",
      "rmdir d",
      "chmod 600 pw",
    ]);
    assert.equal(code, 0, text);
    assert.ok(readFileSync(join(dir, "big.back")).equals(big));
    assert.match(text, /-rw-\S+ +1 0 +0 +1048576 .* big2\n/);
    assert.match(text, /lrwxrwxrwx +1 0 +0 +11 .* pw/);
    // Made by the container's root (shifted on disk); the link reads the rootfs's /etc/passwd.
    assert.equal(readFileSync(join(dir, "pw.back"), "utf8"), "inside\n");
    assert.equal(readlinkSync(join(rootfs, "root", "pw")), "/etc/passwd");
    assert.equal(lstatSync(join(rootfs, "root", "pw")).uid, BASE);
    assert.equal(lstatSync(join(rootfs, "etc", "passwd")).mode & 0o777, 0o600);
    assert.throws(() => lstatSync(join(rootfs, "root", "d")));
  });
});

Deno.test("sftp never leaves the root: host paths and .. lead inside, host files stay untouched", async () => {
  await withRootfs(async ({ dir, rootfs, workDir, target, canary }) => {
    symlinkSync(dir, join(rootfs, "abs")); // the host dir holding the canary
    symlinkSync("../../../..", join(rootfs, "up"));
    const server = serverScript(dir, workDir, target);
    const got = await sftpBatch(server, dir, [`get /up/etc/passwd ${join(dir, "up.back")}`]);
    assert.equal(got.code, 0, got.text);
    assert.equal(readFileSync(join(dir, "up.back"), "utf8"), "inside\n");
    for (
      const cmd of ["get /abs/canary /dev/null", `put ${canary} /abs/canary`, "rm /abs/canary"]
    ) {
      const r = await sftpBatch(server, dir, [cmd]);
      assert.notEqual(r.code, 0, `${cmd}: ${r.text}`);
    }
    assert.equal(readFileSync(canary, "utf8"), "HOST SECRET\n");
  });
});

/** A minimal SFTP client on a channel: packets out, whole answers in. */
function client(ch: SftpChannel) {
  const writer = ch.writable.getWriter();
  const reader = ch.readable.getReader();
  let buf: Uint8Array = new Uint8Array();
  return {
    send: (w: Writer) => writer.write(w.done()),
    raw: (b: Uint8Array) => writer.write(b),
    close: () => writer.close(),
    async next(): Promise<Reader | null> {
      for (;;) {
        if (buf.length >= 4) {
          const len = new DataView(buf.buffer, buf.byteOffset).getUint32(0);
          if (buf.length >= 4 + len) {
            const body = buf.slice(4, 4 + len);
            buf = buf.subarray(4 + len);
            return new Reader(body);
          }
        }
        const { value, done } = await reader.read();
        if (done) return null;
        buf = concatBytes([buf, value]);
      }
    },
  };
}

Deno.test("ConfinedFiles.sftp() hands out a rooted session; a 9th at once is refused", async () => {
  await withRootfs(async ({ files, target }) => {
    const ch = await files.sftp(target);
    const c = client(ch);
    await c.send(new Writer(FXP.INIT).u32(3));
    assert.equal((await c.next())?.byte(), FXP.VERSION);
    await c.send(new Writer(FXP.STAT, 5).string("/etc/passwd"));
    const attrs = (await c.next())!;
    assert.deepEqual([attrs.byte(), attrs.u32(), attrs.attrs().size], [FXP.ATTRS, 5, 7]);
    const more = await Promise.all(
      Array.from({ length: MAX_SFTP_SESSIONS - 1 }, () => files.sftp(target)),
    );
    await assert.rejects(files.sftp(target), (e) => e instanceof Conflict && /8/.test(e.message));
    // Closing one kills its helper and frees its place.
    more[0].close();
    await more[0].closed;
    more[1] = await files.sftp(target);
    for (const m of more) m.close();
    // An oversized packet ends the session: the stream ends without anyone closing it.
    await c.raw(new Uint8Array([0x7f, 0xff, 0xff, 0xff, FXP.WRITE]));
    assert.equal(await c.next(), null);
    await ch.closed;
  });
});

Deno.test("a client that closes its side right after asking still gets every answer", async () => {
  await withRootfs(async ({ files, target }) => {
    const ch = await files.sftp(target);
    const c = client(ch);
    await c.send(new Writer(FXP.INIT).u32(3));
    await c.send(new Writer(FXP.LSTAT, 2).string("/etc/passwd"));
    await c.close();
    await ch.closed; // the helper has exited: its answers are still to be read
    assert.equal((await c.next())?.byte(), FXP.VERSION);
    const attrs = (await c.next())!;
    assert.deepEqual([attrs.byte(), attrs.u32(), attrs.attrs().size], [FXP.ATTRS, 2, 7]);
    assert.equal(await c.next(), null);
  });
});

Deno.test("the helper ends its SFTP session at an oversized packet, without waiting for it", async () => {
  await withRootfs(async ({ workDir, target }) => {
    const [cmd, ...args] = argv(workDir, target);
    const child = new Deno.Command(cmd, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
      env: { DENO_DIR: join(workDir, "cache") },
    }).spawn();
    const hung = setTimeout(() => child.kill("SIGKILL"), 10_000);
    const writer = child.stdin.getWriter();
    await writer.write(new Writer(FXP.INIT).u32(3).done());
    await writer.write(new Writer(FXP.STAT, 1).string("/nope").done());
    await writer.write(new Uint8Array([0, 0x10, 0, 0, FXP.WRITE])); // 1 MiB claimed, none sent
    // stdin stays open: only the helper can end the session.
    const [out, status] = await Promise.all([new Response(child.stdout).bytes(), child.status]);
    clearTimeout(hung);
    await writer.close().catch(() => {});
    assert.equal(status.code, 1);
    const nl = out.indexOf(10);
    assert.match(new TextDecoder().decode(out.subarray(0, nl)), /"ok":true/);
    const version = new Reader(out.subarray(nl + 5));
    assert.equal(version.byte(), FXP.VERSION);
    const at = nl + 1 + 4 + new DataView(out.buffer, nl + 1).getUint32(0);
    const stat = new Reader(out.subarray(at + 4));
    assert.deepEqual([stat.byte(), stat.u32(), stat.u32()], [FXP.STATUS, 1, FX.NO_SUCH_FILE]);
  });
});

Deno.test("an SFTP session on a root that cannot be entered is refused before any stream", async () => {
  await withRootfs(async ({ dir, files, target }) => {
    const missing: ConfinedTarget = { ...target, root: { kind: "dir", path: join(dir, "none") } };
    await assert.rejects(files.sftp(missing), NotFound);
  });
});
