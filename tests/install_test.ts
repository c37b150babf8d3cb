/**
 * `./install.sh` end to end, into temp locations: the launcher, the supervised daemon, the
 * busybox image, and the README's first commands through the installed `outpost`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, uniqueName } from "./helpers.ts";

async function sh(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function alive(pid: number): Promise<boolean> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
  return stat !== "" && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
}

async function killPidfile(file: string): Promise<void> {
  const pid = Number((await Deno.readTextFile(file).catch(() => "")).trim());
  if (pid > 0) {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch { /* gone */ }
  }
}

Deno.test("install.sh installs a working outpost: launch, exec exit code, list, stop, delete", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "outpost-install-" });
  await Deno.chmod(tmp, 0o711); // as /var/lib: unprivileged containers must reach their rootfs
  const prefix = join(tmp, "opt");
  const bin = join(tmp, "bin", "outpost");
  const state = join(tmp, "state");
  // No default network: the host's bridges are not this test's to make.
  const env = {
    OUTPOST_PREFIX: prefix,
    OUTPOST_BIN: bin,
    OUTPOST_SERVICE: "supervise",
    OUTPOST_NO_NETWORK: "1",
  };
  const name = uniqueName("i");
  try {
    const install = await sh(join(ROOT, "install.sh"), ["--state-dir", state], env);
    assert.equal(install.code, 0, install.stderr);
    // Idempotent: a second run succeeds and keeps the one image.
    const again = await sh(join(ROOT, "install.sh"), ["--state-dir", state], env);
    assert.equal(again.code, 0, again.stderr);

    const launcher = await Deno.readTextFile(bin);
    assert.doesNotMatch(launcher, /--allow-all|-A /, "the launcher narrows permissions");
    assert.match(launcher, /dist\/cli\/main\.js/, "commands run the prebuilt bundle");
    const outpost = (...args: string[]) => sh(bin, args, { OUTPOST_DIR: state });

    const images = JSON.parse((await outpost("image", "list", "--format", "json")).stdout);
    assert.equal(images.length, 1);
    assert.equal(images[0].aliases[0].name, "busybox");

    assert.equal((await outpost("launch", "busybox", name)).code, 0);
    const exec = await outpost("exec", name, "--", "sh", "-c", "exit 3");
    assert.equal(exec.code, 3);
    const list = JSON.parse((await outpost("list", "--format", "json")).stdout);
    assert.equal(list[0].name, name);
    assert.equal(list[0].status, "Running");
    assert.ok(list[0].state.pid > 0);
    // YAML output loads its module (and Node's built-ins it needs) only then.
    const yaml = await outpost("list", "--format", "yaml");
    assert.equal(yaml.code, 0, yaml.stderr);
    assert.match(yaml.stdout, new RegExp(`^- architecture: \\S+\\n[^]*  name: ${name}\\n`));
    const typo = await outpost("lst");
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /unknown command 'lst'[^]*list/);
    assert.equal((await outpost("stop", name, "--timeout", "10")).code, 0);
    assert.equal((await outpost("delete", name)).code, 0);
    assert.equal(JSON.parse((await outpost("list", "--format", "json")).stdout).length, 0);

    const bad = await outpost("launch", "busybox", name, "-c", "nope=1");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Unknown config key "nope"/);

    // Uninstall: a running container survives a plain uninstall; --purge removes it (and a stopped
    // one) and the state.
    assert.equal((await outpost("launch", "busybox", name)).code, 0);
    assert.equal((await outpost("init", "busybox", uniqueName("s"))).code, 0);
    const supervisor = Number((await Deno.readTextFile(join(state, "supervisor.pid"))).trim());
    const keep = await sh(join(ROOT, "install.sh"), ["--uninstall", "--state-dir", state], env);
    assert.equal(keep.code, 0, keep.stderr);
    assert.equal(await exists(bin), false);
    assert.equal(await exists(prefix), false);
    assert.equal(await alive(supervisor), false);
    assert.match(
      (await sh("lxc-info", ["-P", join(state, "containers"), "-n", name, "-s"])).stdout,
      /RUNNING/,
    );
    const purge = await sh(join(ROOT, "install.sh"), [
      "--uninstall",
      "--purge",
      "--state-dir",
      state,
    ], env);
    assert.equal(purge.code, 0, purge.stderr);
    assert.equal(await exists(state), false);
  } finally {
    await sh("lxc-stop", ["-P", join(state, "containers"), "-n", name, "-k"]);
    await killPidfile(join(state, "supervisor.pid"));
    await new Promise((r) => setTimeout(r, 300));
    await killPidfile(join(state, "daemon.pid"));
    await new Promise((r) => setTimeout(r, 300));
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
});
