/**
 * The hostile suite, escapes: a container that owns its own files races symlinks under the files
 * API, plants symlinks where the daemon writes (hostname at create and rename), and a client
 * sends config that would inject LXC config lines. A host canary directory must come out
 * unchanged, no response may carry its bytes, and no hook may ever run.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Operation } from "../contract/responses.ts";
import { busyboxTarball, TestDaemon, uniqueName } from "./helpers.ts";

/** A host directory no container may see or change, with a secret marker in its file. */
class Canary {
  readonly marker = `CANARY-${crypto.randomUUID()}`;
  private constructor(readonly dir: string) {}

  static async make(): Promise<Canary> {
    const dir = await Deno.makeTempDir({ prefix: "outpost-canary-" });
    const c = new Canary(dir);
    await Deno.writeTextFile(join(dir, "secret"), `${c.marker}\n`);
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeTextFile(join(dir, "sub", "inner"), `${c.marker} inner\n`);
    // World-writable, as /tmp is: an escape as any uid would show.
    await Deno.chmod(dir, 0o777);
    await Deno.chmod(join(dir, "sub"), 0o777);
    return c;
  }

  /** Every path with its type, size, mode, owner and content. */
  snapshot(): string {
    const out: string[] = [];
    const walk = (p: string) => {
      for (const name of readdirSync(p).sort()) {
        const full = join(p, name);
        const st = statSync(full);
        const content = st.isFile() ? readFileSync(full, "utf8") : "";
        out.push(`${full} ${st.isDirectory()} ${st.size} ${st.mode} ${st.uid} ${content}`);
        if (st.isDirectory()) walk(full);
      }
    };
    walk(this.dir);
    return out.join("\n");
  }

  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

function filesUrl(name: string, path: string): string {
  return `/1.0/instances/${name}/files?path=${encodeURIComponent(path)}`;
}

async function withDaemon(fn: (d: TestDaemon, canary: Canary) => Promise<void>): Promise<void> {
  const d = await TestDaemon.start();
  const canary = await Canary.make();
  try {
    await d.importBusybox();
    await fn(d, canary);
  } finally {
    await d.cleanup();
    await canary.remove();
  }
}

/** Runs a shell command in the container through the API and returns its exit code. */
async function sh(d: TestDaemon, name: string, script: string): Promise<number> {
  const op = await d.api.run("POST", `/1.0/instances/${name}/exec`, {
    body: { command: ["/bin/busybox", "sh", "-c", script], "record-output": false },
  }) as Operation;
  return Number(op.metadata?.return);
}

/**
 * For `ms`, pushes, pulls, lists, deletes and makes directories under `dir` in the container,
 * several at a time; returns how many requests were made. Any answer carrying the canary's
 * marker fails the test.
 */
async function hammer(
  d: TestDaemon,
  name: string,
  dir: string,
  canary: Canary,
  ms: number,
): Promise<number> {
  const deadline = Date.now() + ms;
  let count = 0;
  const worker = async (w: number) => {
    while (Date.now() < deadline) {
      const reqs: [string, string, Record<string, unknown>][] = [
        ["POST", `${dir}/pushed-${w}`, { raw: "PUSHED", headers: { "X-LXD-type": "file" } }],
        ["POST", `${dir}/newdir-${w}`, { raw: "", headers: { "X-LXD-type": "directory" } }],
        ["POST", `${dir}/link-${w}`, { raw: "/etc", headers: { "X-LXD-type": "symlink" } }],
        ["GET", `${dir}/secret`, {}],
        ["GET", `${dir}/sub/inner`, {}],
        ["GET", `${dir}`, {}],
        ["GET", `${dir}/sub`, {}],
        ["DELETE", `${dir}/secret`, {}],
        ["DELETE", `${dir}/sub/inner`, {}],
        ["DELETE", `${dir}/pushed-${w}`, {}],
        ["DELETE", `${dir}/newdir-${w}`, {}],
      ];
      for (const [method, path, opts] of reqs) {
        const res = await d.api.fetch(method, filesUrl(name, path), opts);
        const body = await res.text();
        count++;
        assert.ok(res.status < 500, `${method} ${path}: ${res.status} ${body.slice(0, 200)}`);
        assert.ok(!body.includes(canary.marker), `${method} ${path} returned host bytes`);
      }
    }
  };
  await Promise.all([0, 1, 2].map(worker));
  return count;
}

/** A busybox loop in the container that keeps swapping `dir` for symlinks to the canary and /. */
function racer(dir: string, canary: Canary): string {
  return `while :; do mv ${dir} ${dir}.x 2>/dev/null; ln -s ${canary.dir} ${dir}; ` +
    `mv ${dir} ${dir}.l 2>/dev/null; mv ${dir}.x ${dir} 2>/dev/null; rm -f ${dir}.l; ` +
    `ln -s / ${dir}.r; mv ${dir} ${dir}.x 2>/dev/null; mv ${dir}.r ${dir} 2>/dev/null; ` +
    `rm -f ${dir}; mv ${dir}.x ${dir} 2>/dev/null; done`;
}

Deno.test("the files API under a symlink-swap race never reaches the host: with a shell, without, and stopped", async () => {
  await withDaemon(async (d, canary) => {
    const before = canary.snapshot();
    const name = uniqueName("esc");
    await d.ok("launch", "busybox", name);
    assert.equal(await sh(d, name, "mkdir -p /root/d && echo inside > /root/d/secret"), 0);

    // Running, with a shell: the racer swaps /root/d in a tight loop.
    const start = `setsid /bin/busybox sh -c '${racer("/root/d", canary)}' ` +
      "</dev/null >/dev/null 2>&1 &";
    assert.equal(await sh(d, name, start), 0);
    const withShell = await hammer(d, name, "/root/d", canary, 10_000);

    // Running, without a shell: the container deletes its own /bin/sh (the daemon used to fall
    // back to resolving paths on the host side then).
    assert.equal(await sh(d, name, "/bin/busybox rm -f /bin/sh"), 0);
    const noShell = await hammer(d, name, "/root/d", canary, 10_000);

    // Stopped: symlinks left in place point at the host canary and at the root.
    await d.ok("stop", "-f", name);
    const rootfs = join(d.lxcPath, name, "rootfs");
    await Deno.remove(join(rootfs, "root", "d"), { recursive: true }).catch(() => {});
    await Deno.remove(join(rootfs, "root", "d.x"), { recursive: true }).catch(() => {});
    await Deno.symlink(canary.dir, join(rootfs, "root", "d"));
    await Deno.symlink("../../../../../../../..", join(rootfs, "root", "up"));
    const stopped = await hammer(d, name, "/root/d", canary, 3_000) +
      await hammer(d, name, `/root/up${canary.dir}`, canary, 3_000);

    console.log(`requests: ${withShell} with a shell, ${noShell} without, ${stopped} stopped`);
    assert.equal(canary.snapshot(), before, "the host canary changed");
    assert.ok(withShell > 20 && noShell > 20 && stopped > 20, "too few requests to mean much");
  });
});

/** A unified image whose rootfs holds only the given symlinks (and an /etc when asked). */
async function symlinkImage(dir: string, links: Record<string, string>): Promise<string> {
  const root = join(dir, "img");
  await Deno.mkdir(join(root, "rootfs", "bin"), { recursive: true });
  await Deno.writeTextFile(
    join(root, "metadata.yaml"),
    `architecture: x86_64\ncreation_date: ${Math.floor(Date.now() / 1000)}\n` +
      `properties:\n  description: symlink trap ${crypto.randomUUID()}\n`,
  );
  for (const [path, target] of Object.entries(links)) {
    await Deno.mkdir(join(root, "rootfs", path, ".."), { recursive: true });
    await Deno.symlink(target, join(root, "rootfs", path));
  }
  const file = join(dir, `trap-${crypto.randomUUID().slice(0, 6)}.tar.gz`);
  const out = await new Deno.Command("tar", {
    args: ["-czf", file, "-C", root, "metadata.yaml", "rootfs"],
  }).output();
  assert.ok(out.success);
  await Deno.remove(root, { recursive: true });
  return file;
}

Deno.test("create and rename write the hostname inside the container, never through its symlinks", async () => {
  await withDaemon(async (d, canary) => {
    const before = canary.snapshot();
    // Rename: /etc/hostname is a symlink to a host file, then /etc a symlink to a host dir.
    const name = uniqueName("ren");
    await d.ok("launch", "busybox", name);
    assert.equal(await sh(d, name, `ln -sf ${canary.dir}/secret /etc/hostname`), 0);
    await d.ok("stop", "-f", name);
    const renamed = uniqueName("ren");
    await d.ok("rename", name, renamed);
    assert.equal(canary.snapshot(), before, "rename wrote through /etc/hostname");
    await d.ok("start", renamed);
    assert.equal(
      await sh(d, renamed, `rm -rf /etc.old; mv /etc /etc.old; ln -s ${canary.dir} /etc`),
      0,
    );
    await d.ok("stop", "-f", renamed);
    await d.ok("rename", renamed, uniqueName("ren"));
    assert.equal(canary.snapshot(), before, "rename created a file in the host dir");

    // Create: images whose rootfs plants the same traps.
    const traps: Record<string, string>[] = [
      { "etc/hostname": `${canary.dir}/secret` },
      { etc: canary.dir },
      { etc: "../../../../../../../../../../" },
    ];
    for (const links of traps) {
      const image = await symlinkImage(d.dir, links);
      const alias = uniqueName("trap");
      await d.ok("image", "import", image, "--alias", alias);
      await d.ok("init", alias, uniqueName("cre"));
    }
    assert.equal(canary.snapshot(), before, "create wrote through a symlink");
    assert.ok(!existsSync("/hostname"), "create wrote /hostname on the host");
  });
});

Deno.test("config through every key family cannot inject an LXC config line or a hook", async () => {
  await withDaemon(async (d, canary) => {
    const name = uniqueName("inj");
    await d.ok("init", "busybox", name);
    const hookFile = join(canary.dir, "hook-ran");
    const hook = `lxc.hook.pre-start = /bin/sh -c "touch ${hookFile}"`;
    const mount = `lxc.mount.entry = ${canary.dir} mnt none bind,create=dir 0 0`;
    const payloads = [`x\n${hook}`, `x\r\n${mount}`, `x\u0000${hook}`, `\n${hook}\n`, hook];
    const families = [
      "environment.Z",
      "user.note",
      "limits.memory",
      "limits.cpu",
      "limits.processes",
      "security.privileged",
      "security.nesting",
      "boot.autostart",
      "image.os",
      "volatile.x",
      "raw.lxc",
    ];
    const configFile = join(d.lxcPath, name, "config");
    const configBefore = await Deno.readTextFile(configFile);
    let refused = 0;
    const send = async (method: string, path: string, body: unknown) => {
      const res = await d.api.fetch(method, path, { body });
      const text = await res.text();
      assert.ok(res.status < 500, `${method} ${path}: ${res.status} ${text.slice(0, 200)}`);
      if (res.status >= 400) refused++;
      else if (res.status === 202) await d.api.wait(JSON.parse(text).metadata.id).catch(() => {});
    };
    for (const family of families) {
      for (const p of payloads) {
        // The payload in the value, and in the key itself.
        for (const config of [{ [family]: p }, { [`${family}${p}`]: "1" }]) {
          await send("PATCH", `/1.0/instances/${name}`, { config });
          await send("PUT", `/1.0/instances/${name}`, { config, devices: {}, profiles: [] });
          await send("POST", "/1.0/instances", {
            name: uniqueName("inj"),
            source: { type: "image", alias: "busybox" },
            config,
          });
        }
      }
    }
    // The instance still has its own config, still starts, and no hook ever ran.
    await d.ok("start", name);
    const config = await Deno.readTextFile(configFile);
    assert.equal(config.split("\n").filter((l) => l.startsWith("lxc.hook")).length, 0);
    assert.equal(
      config.split("\n").filter((l) => l.startsWith("lxc.mount.entry")).length,
      configBefore.split("\n").filter((l) => l.startsWith("lxc.mount.entry")).length,
    );
    assert.ok(!existsSync(hookFile), "a hook ran on the host");
    // Every created instance's config is clean too.
    for (const entry of readdirSync(d.lxcPath)) {
      const text = await Deno.readTextFile(join(d.lxcPath, entry, "config")).catch(() => "");
      const lines = text.split("\n");
      assert.ok(!lines.some((l) => l.startsWith("lxc.hook")), `${entry}: a hook line was written`);
      assert.ok(
        !lines.some((l) => l.startsWith("lxc.mount.entry") && l.includes(canary.dir)),
        `${entry}: the canary was mounted`,
      );
    }
    console.log(`${refused} injection attempts refused`);
    assert.ok(refused >= families.length * payloads.length * 4, `only ${refused} refused`);
  });
});

// Built once per process: keeps the image build out of the first test's timing.
await busyboxTarball();
