/**
 * Compatibility: the stock LXD 5.0 client (`lxc`, a real Incus-API client nobody here wrote)
 * drives outpost over its unix socket, and the same scenarios run through `outpost` itself.
 * Skipped (reported as ignored) where `lxc` is not installed; tests/run.sh installs it.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readCgroupFile } from "../drivers/lxc/cgroups.ts";
import { Runner } from "../drivers/runner.ts";
import { HAS_LXC, StockLxc, TestDaemon, typeInto, uniqueName } from "./helpers.ts";

const runner = new Runner();

Deno.test({
  name:
    "stock lxc: launch, list, info, exec (output, exit code, stdin, signals), config, stop/start/restart, delete -f",
  ignore: !HAS_LXC,
  async fn() {
    const d = await TestDaemon.start();
    try {
      await d.importBusybox("bb");
      const lxc = await StockLxc.for(d);
      const name = uniqueName("x");
      await lxc.ok("launch", "bb", name);

      const list = await lxc.ok("list");
      assert.match(list, new RegExp(`\\| ${name}\\s+\\| RUNNING`));
      const csv = await lxc.ok("list", "--format", "csv", "-c", "ns");
      assert.equal(csv.trim(), `${name},RUNNING`);

      const info = await lxc.ok("info", name);
      assert.match(info, new RegExp(`Name: ${name}`));
      assert.match(info, /Status: RUNNING/);
      assert.match(info, new RegExp(`PID: ${(await d.lxcState(name)).pid}`));

      // Output, stderr and the exit code.
      const r = await lxc.run(["exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 5"]);
      assert.equal(r.code, 5);
      assert.equal(r.stdout, "out\n");
      assert.equal(r.stderr, "err\n");

      // stdin piped in, binary-safe, both ways.
      const data = new Uint8Array(200_000).map((_, i) => (i * 7919) % 251);
      const child = new Deno.Command("lxc", {
        args: ["exec", name, "--", "sh", "-c", "cat | md5sum"],
        env: lxc.env,
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(data);
      await w.close();
      const md5 = new TextDecoder().decode((await child.output()).stdout).split(" ")[0];
      assert.equal(md5, createHash("md5").update(data).digest("hex"));

      // A signal to the client reaches the command (control message).
      const sig = new Deno.Command("lxc", {
        args: [
          "exec",
          name,
          "--",
          "sh",
          "-c",
          "trap 'echo got-term; exit 9' TERM; echo ready; sleep 30 & wait",
        ],
        env: lxc.env,
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
      }).spawn();
      const reader = sig.stdout.getReader();
      const first = await reader.read();
      assert.match(new TextDecoder().decode(first.value), /ready/);
      sig.kill("SIGTERM");
      let rest = "";
      for (let c = await reader.read(); !c.done; c = await reader.read()) {
        rest += new TextDecoder().decode(c.value);
      }
      assert.equal((await sig.status).code, 9);
      assert.match(rest, /got-term/);

      // An interactive shell on a PTY, with the terminal's size.
      const tty = await lxc.tty(["exec", name, "--", "sh"], "stty size; tty; exit 7\r");
      assert.equal(tty.code, 7, tty.stdout + tty.stderr);
      assert.match(tty.stdout, /30 100/);
      assert.match(tty.stdout, /\/dev\/pts\/\d+/);

      // Config: a live limit lands in the cgroup.
      await lxc.ok("config", "set", name, "limits.memory", "64MiB");
      const pid = (await d.lxcState(name)).pid;
      assert.equal(
        await readCgroupFile(runner, pid, "memory", "memory.limit_in_bytes", "memory.max"),
        String(64 * 2 ** 20),
      );
      assert.match(await lxc.ok("config", "get", name, "limits.memory"), /64MiB/);
      const bad = await lxc.run(["config", "set", name, "limits.bogus", "1"]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /Unknown config key "limits\.bogus"/);

      // Lifecycle.
      await lxc.ok("stop", name);
      assert.equal((await d.lxcState(name)).state, "STOPPED");
      assert.match(await lxc.ok("list", "--format", "csv", "-c", "ns"), /STOPPED/);
      await lxc.ok("start", name);
      assert.equal((await d.lxcState(name)).state, "RUNNING");
      const before = (await d.lxcState(name)).pid;
      await lxc.ok("restart", name);
      const after = await d.lxcState(name);
      assert.equal(after.state, "RUNNING");
      assert.notEqual(after.pid, before);
      await lxc.ok("pause", name);
      assert.equal((await d.lxcState(name)).state, "FROZEN");
      await lxc.ok("start", name);
      assert.equal((await d.lxcState(name)).state, "RUNNING");

      // Rename (stopped), and a copy, which is not supported yet, is refused by name.
      await lxc.ok("stop", name, "--force");
      const renamed = uniqueName("y");
      await lxc.ok("rename", name, renamed);
      assert.match(
        await lxc.ok("list", "--format", "csv", "-c", "n"),
        new RegExp(`^${renamed}$`, "m"),
      );
      await lxc.ok("rename", renamed, name);
      await lxc.ok("start", name);
      const copy = await lxc.run(["copy", name, uniqueName("z")]);
      assert.notEqual(copy.code, 0);
      assert.match(copy.stderr, /source type "copy" is not supported yet/);

      // Errors come back as the client's one-line errors.
      const missing = await lxc.run(["exec", "nope", "--", "true"]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /not found/i);

      await lxc.ok("delete", "-f", name);
      assert.equal((await d.lxcState(name)).state, "");
      assert.equal((await lxc.ok("list", "--format", "csv")).trim(), "");
    } finally {
      await d.cleanup();
    }
  },
});

Deno.test({
  name: "stock lxc: console --show-log and an interactive console (detach with ctrl+a q)",
  ignore: !HAS_LXC,
  async fn() {
    const d = await TestDaemon.start();
    try {
      await d.importBusybox("bb");
      const lxc = await StockLxc.for(d);
      const name = uniqueName("k");
      await lxc.ok("launch", "bb", name);
      const session = await lxc.tty(["console", name], "\r echo CONSOLE-$((6*7))\r\x01q", 2000);
      assert.match(session.stdout, /CONSOLE-42/, session.stdout + session.stderr);
      assert.match(await lxc.ok("console", name, "--show-log"), /CONSOLE-42/);
    } finally {
      await d.cleanup();
    }
  },
});

Deno.test("outpost exec: pipes with streamed stdin, an interactive PTY, and signals", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("bb");
    const name = uniqueName("o");
    await d.ok("launch", "bb", name);

    // Pipes: stdout and stderr apart, stdin streamed, exit code propagated.
    const child = d.spawnCli(
      "exec",
      name,
      "--",
      "sh",
      "-c",
      "wc -c; echo err >&2; exit 4",
    );
    const w = child.stdin.getWriter();
    await w.write(new Uint8Array(123_457));
    await w.close();
    const out = await child.output();
    assert.equal(out.code, 4);
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "123457");
    assert.equal(new TextDecoder().decode(out.stderr), "err\n");

    // -t forces a PTY even without a terminal; -T forces pipes.
    const tty = await typeInto(
      `stty cols 90 rows 20; ${d.cliCommandLine} exec ${name} -- sh`,
      "stty size; exit 6\r",
      {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      },
    );
    assert.equal(tty.code, 6, tty.stdout + tty.stderr);
    assert.match(tty.stdout, /20 90/);
    const forced = await d.cli(
      "exec",
      "-T",
      name,
      "--",
      "sh",
      "-c",
      "test -t 0 && echo tty || echo pipe",
    );
    assert.equal(forced.stdout.trim(), "pipe");

    // Working directory, user and environment.
    assert.equal((await d.ok("exec", name, "--cwd", "/etc", "--", "pwd")).trim(), "/etc");
    assert.equal((await d.ok("exec", name, "--user", "65534", "--", "id", "-u")).trim(), "65534");
    assert.equal(
      (await d.ok("exec", name, "--env", "A=b c", "--", "sh", "-c", 'echo "$A"')).trim(),
      "b c",
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("outpost console attaches and detaches, and monitor prints lifecycle events", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("bb");
    const name = uniqueName("m");
    await d.ok("launch", "bb", name);
    const session = await typeInto(
      `${d.cliCommandLine} console ${name}`,
      "\r echo HELLO-$((2*21))\r\x01q",
      {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      },
      2000,
    );
    assert.equal(session.code, 0, session.stderr);
    assert.match(session.stdout, /HELLO-42/);
    assert.match(await d.ok("console", name, "--show-log"), /HELLO-42/);

    const monitor = d.spawnCli(
      "monitor",
      "--type",
      "lifecycle",
      "--format",
      "json",
      "--count",
      "2",
    );
    await monitor.stdin.close();
    await new Promise((r) => setTimeout(r, 1500));
    await d.ok("pause", name);
    await d.ok("resume", name);
    const out = await monitor.output();
    const events = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(events.map((e) => e.metadata.action), ["instance-paused", "instance-resumed"]);
  } finally {
    await d.cleanup();
  }
});
