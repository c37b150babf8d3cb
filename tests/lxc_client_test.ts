/**
 * Compatibility: the stock LXD 5.0 client (`lxc`, a real Incus-API client nobody here wrote)
 * drives outpost over its unix socket, and the same scenarios run through `outpost` itself.
 * The stock client's tests are skipped (reported as ignored) where `lxc` is not installed;
 * tests/run.sh installs it. One daemon and one container, launched by the first test that needs
 * it, serve every test; each puts the container in the state it needs.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readCgroupFile } from "../drivers/lxc/cgroups.ts";
import { Runner } from "../drivers/runner.ts";
import {
  HAS_LXC,
  sharedDaemon,
  StockLxc,
  type TestDaemon,
  typeInto,
  uniqueName,
} from "./helpers.ts";

const runner = new Runner();
const decoder = new TextDecoder();
/** The environment a command typed under a PTY (`typeInto`) gets. */
const PATH_ONLY = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
/** A command that says "ready", then answers a SIGTERM by saying so and exiting 9. */
const TRAP_TERM = "trap 'echo got-term; exit 9' TERM; echo ready; sleep 30 & wait";
/** A command that says whether its stdin is a terminal. */
const STDIN_KIND = "test -t 0 && echo tty || echo pipe";

/** The daemon the tests share, with the busybox image aliased "bb". */
const daemon = sharedDaemon((d) => d.importBusybox("bb"));
/** The container they share. */
const NAME = uniqueName("x");

let client: Promise<StockLxc> | undefined;

/** The stock client pointed at the shared daemon. */
async function stockLxc(): Promise<StockLxc> {
  const d = await daemon();
  client ??= StockLxc.for(d);
  return await client;
}

/** The shared daemon, with the shared container running (launched, started or resumed). */
async function running(): Promise<TestDaemon> {
  const d = await daemon();
  await d.ensureRunning(NAME, "bb");
  return d;
}

/** A test of the stock client: skipped where `lxc` is not installed. */
function lxcTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !HAS_LXC, fn });
}

/** Starts `lxc ARGS` with its stdout piped (stderr inherited), for tests that stream. */
function spawnLxc(lxc: StockLxc, args: string[], stdin: "piped" | "null"): Deno.ChildProcess {
  return new Deno.Command("lxc", {
    args,
    env: lxc.env,
    clearEnv: true,
    stdin,
    stdout: "piped",
  }).spawn();
}

/**
 * Sends SIGTERM to an exec client running TRAP_TERM once it has printed something (the command's
 * "ready"); what it printed first, what it printed after the signal, and its exit code.
 */
async function terminateWhenReady(
  child: Deno.ChildProcess,
): Promise<{ first: string; rest: string; code: number }> {
  const reader = child.stdout.getReader();
  const first = decoder.decode((await reader.read()).value);
  child.kill("SIGTERM");
  let rest = "";
  for (let c = await reader.read(); !c.done; c = await reader.read()) {
    rest += decoder.decode(c.value);
  }
  return { first, rest, code: (await child.status).code };
}

// The stock client: create, list, inspect.

lxcTest("lxc launch creates a container from an image and starts it", async () => {
  const d = await daemon();
  if (await d.status(NAME) !== undefined) await d.ok("delete", "--force", NAME);
  await (await stockLxc()).ok("launch", "bb", NAME);
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
  assert.equal(await d.status(NAME), "Running");
});

lxcTest("lxc list shows a running container as RUNNING, as a table and as CSV", async () => {
  await running();
  const lxc = await stockLxc();
  assert.match(await lxc.ok("list"), new RegExp(`\\| ${NAME}\\s+\\| RUNNING`));
  const csv = await lxc.ok("list", "--format", "csv", "-c", "ns");
  assert.equal(csv.trim(), `${NAME},RUNNING`);
});

lxcTest("lxc info shows a running container's name, status and init PID", async () => {
  const d = await running();
  const info = await (await stockLxc()).ok("info", NAME);
  assert.match(info, new RegExp(`Name: ${NAME}`));
  assert.match(info, /Status: RUNNING/);
  assert.match(info, new RegExp(`PID: ${(await d.lxcState(NAME)).pid}`));
});

lxcTest("lxc info --show-log prints the container's lxc.log", async () => {
  const d = await running();
  const mark = `outpost-log-mark-${uniqueName("m")}`;
  await Deno.writeTextFile(`${d.lxcPath}/${NAME}/lxc.log`, `${mark}\n`, { append: true });
  assert.match(await (await stockLxc()).ok("info", "--show-log", NAME), new RegExp(mark));
});

// Exec through the stock client.

lxcTest(
  "lxc exec passes the command's stdout and stderr apart and exits with its code",
  async () => {
    await running();
    const lxc = await stockLxc();
    const r = await lxc.run(["exec", NAME, "--", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert.equal(r.code, 5);
    assert.equal(r.stdout, "out\n");
    assert.equal(r.stderr, "err\n");
  },
);

lxcTest("lxc exec streams 200 kB of stdin to the command byte for byte", async () => {
  await running();
  const data = new Uint8Array(200_000).map((_, i) => (i * 7919) % 251);
  const child = spawnLxc(
    await stockLxc(),
    ["exec", NAME, "--", "sh", "-c", "cat | md5sum"],
    "piped",
  );
  const w = child.stdin.getWriter();
  await w.write(data);
  await w.close();
  const md5 = decoder.decode((await child.output()).stdout).split(" ")[0];
  assert.equal(md5, createHash("md5").update(data).digest("hex"));
});

lxcTest("a SIGTERM to lxc exec reaches the command", async () => {
  await running();
  const child = spawnLxc(await stockLxc(), ["exec", NAME, "--", "sh", "-c", TRAP_TERM], "null");
  const { first, rest, code } = await terminateWhenReady(child);
  assert.match(first, /ready/);
  assert.equal(code, 9);
  assert.match(rest, /got-term/);
});

lxcTest("lxc exec from a terminal runs the command on a PTY of the terminal's size", async () => {
  await running();
  const tty = await (await stockLxc()).tty(["exec", NAME, "--", "sh"], "stty size; tty; exit 7\r");
  assert.equal(tty.code, 7, tty.stdout + tty.stderr);
  assert.match(tty.stdout, /30 100/);
  assert.match(tty.stdout, /\/dev\/pts\/\d+/);
});

lxcTest("lxc exec on a missing container fails with a not-found error", async () => {
  await daemon();
  const missing = await (await stockLxc()).run(["exec", "nope", "--", "true"]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /not found/i);
});

// Exec through outpost.

Deno.test("outpost exec streams 123 kB of piped stdin to the command", async () => {
  const d = await running();
  const child = d.spawnCli("exec", NAME, "--", "sh", "-c", "wc -c");
  const w = child.stdin.getWriter();
  await w.write(new Uint8Array(123_457));
  await w.close();
  const out = await child.output();
  assert.equal(out.code, 0, decoder.decode(out.stderr));
  assert.equal(decoder.decode(out.stdout).trim(), "123457");
});

Deno.test("outpost exec passes the command's stdout and stderr apart and exits with its code", async () => {
  const d = await running();
  const r = await d.cli("exec", NAME, "--", "sh", "-c", "echo out; echo err >&2; exit 4");
  assert.equal(r.code, 4);
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "err\n");
});

Deno.test("a SIGTERM to outpost exec reaches the command", async () => {
  const d = await running();
  const child = d.spawnCli("exec", NAME, "--", "sh", "-c", TRAP_TERM);
  await child.stdin.close();
  const stderr = new Response(child.stderr).text();
  const { first, rest, code } = await terminateWhenReady(child);
  assert.match(first, /ready/, await stderr);
  assert.equal(code, 9, await stderr);
  assert.match(rest, /got-term/);
});

Deno.test("outpost exec from a terminal runs the command on a PTY of the terminal's size", async () => {
  const d = await running();
  const tty = await typeInto(
    `stty cols 90 rows 20; ${d.cliCommandLine} exec ${NAME} -- sh`,
    "stty size; exit 6\r",
    PATH_ONLY,
  );
  assert.equal(tty.code, 6, tty.stdout + tty.stderr);
  assert.match(tty.stdout, /20 90/);
});

Deno.test("outpost exec -T runs the command on pipes even from a terminal", async () => {
  const d = await running();
  const r = await typeInto(
    `${d.cliCommandLine} exec -T ${NAME} -- sh -c '${STDIN_KIND}'`,
    "",
    PATH_ONLY,
    0,
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stdout.trim(), "pipe");
});

Deno.test("outpost exec -t runs the command on a PTY even without a terminal", async () => {
  const d = await running();
  const r = await d.cli("exec", "-t", NAME, "--", "sh", "-c", STDIN_KIND);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "tty");
});

Deno.test("outpost exec --cwd runs the command in that directory", async () => {
  const d = await running();
  assert.equal((await d.ok("exec", NAME, "--cwd", "/etc", "--", "pwd")).trim(), "/etc");
});

Deno.test("outpost exec --user runs the command as that uid", async () => {
  const d = await running();
  assert.equal((await d.ok("exec", NAME, "--user", "65534", "--", "id", "-u")).trim(), "65534");
});

Deno.test("outpost exec --env gives the command a variable, spaces and all", async () => {
  const d = await running();
  assert.equal(
    (await d.ok("exec", NAME, "--env", "A=b c", "--", "sh", "-c", 'echo "$A"')).trim(),
    "b c",
  );
});

// Config through the stock client.

lxcTest(
  "lxc config set limits.memory reaches a running container's cgroup, and config get reads it",
  async () => {
    const d = await running();
    const lxc = await stockLxc();
    try {
      await lxc.ok("config", "set", NAME, "limits.memory", "64MiB");
      const { pid } = await d.lxcState(NAME);
      assert.equal(
        await readCgroupFile(runner, pid, "memory", "memory.limit_in_bytes", "memory.max"),
        String(64 * 2 ** 20),
      );
      assert.match(await lxc.ok("config", "get", NAME, "limits.memory"), /64MiB/);
    } finally {
      // Back to no limit, as launched, whatever order the tests run in.
      await d.cli("config", "unset", NAME, "limits.memory");
    }
  },
);

lxcTest("lxc config set refuses an unknown key by name", async () => {
  await running();
  const bad = await (await stockLxc()).run(["config", "set", NAME, "limits.bogus", "1"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /Unknown config key "limits\.bogus"/);
});

// The console and events.

lxcTest("lxc console attaches to the container's console and detaches on ctrl+a q", async () => {
  await running();
  const session = await (await stockLxc()).tty(
    ["console", NAME],
    "\r echo CONSOLE-$((6*7)); tty\r\x01q",
    2000,
  );
  assert.equal(session.code, 0, session.stdout + session.stderr);
  assert.match(session.stdout, /CONSOLE-42/, session.stdout + session.stderr);
  assert.match(session.stdout, /\/dev\/console/);
});

lxcTest("lxc console --show-log prints what the container wrote to its console", async () => {
  const d = await running();
  const mark = uniqueName("mark-");
  await d.ok("exec", NAME, "--", "sh", "-c", `echo ${mark} > /dev/console`);
  assert.match(await (await stockLxc()).ok("console", NAME, "--show-log"), new RegExp(mark));
});

Deno.test("outpost console attaches to the container's console and detaches on ctrl+a q", async () => {
  const d = await running();
  const session = await typeInto(
    `${d.cliCommandLine} console ${NAME}`,
    "\r echo HELLO-$((2*21)); tty\r\x01q",
    PATH_ONLY,
    2000,
  );
  assert.equal(session.code, 0, session.stderr);
  assert.match(session.stdout, /HELLO-42/);
  assert.match(session.stdout, /\/dev\/console/);
});

Deno.test("outpost console --show-log prints what the container wrote to its console", async () => {
  const d = await running();
  const mark = uniqueName("mark-");
  await d.ok("exec", NAME, "--", "sh", "-c", `echo ${mark} > /dev/console`);
  assert.match(await d.ok("console", NAME, "--show-log"), new RegExp(mark));
});

Deno.test("outpost monitor --type lifecycle prints a pause and a resume as JSON events", async () => {
  const d = await running();
  const monitor = d.spawnCli("monitor", "--type", "lifecycle", "--format", "json", "--count", "2");
  await monitor.stdin.close();
  await new Promise((r) => setTimeout(r, 1500));
  await d.ok("pause", NAME);
  await d.ok("resume", NAME);
  const out = await monitor.output();
  const events = decoder.decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => e.metadata.action), ["instance-paused", "instance-resumed"]);
});

// Lifecycle through the stock client.

lxcTest("lxc pause freezes a running container", async () => {
  const d = await running();
  await (await stockLxc()).ok("pause", NAME);
  assert.equal((await d.lxcState(NAME)).state, "FROZEN");
});

lxcTest("lxc start thaws a paused container", async () => {
  const d = await running();
  await d.ok("pause", NAME);
  await (await stockLxc()).ok("start", NAME);
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

lxcTest("lxc restart runs a running container again under a new init", async () => {
  const d = await running();
  const before = (await d.lxcState(NAME)).pid;
  await (await stockLxc()).ok("restart", NAME);
  const after = await d.lxcState(NAME);
  assert.equal(after.state, "RUNNING");
  assert.notEqual(after.pid, before);
});

lxcTest("lxc stop stops a running container, in LXC and in lxc list", async () => {
  const d = await running();
  const lxc = await stockLxc();
  await lxc.ok("stop", NAME);
  assert.equal((await d.lxcState(NAME)).state, "STOPPED");
  assert.match(await lxc.ok("list", "--format", "csv", "-c", "ns"), /STOPPED/);
});

lxcTest("lxc rename renames a stopped container", async () => {
  const d = await daemon();
  await d.ensureStopped(NAME, "bb");
  const lxc = await stockLxc();
  const renamed = uniqueName("y");
  try {
    await lxc.ok("rename", NAME, renamed);
    const names = await lxc.ok("list", "--format", "csv", "-c", "n");
    assert.match(names, new RegExp(`^${renamed}$`, "m"));
    assert.doesNotMatch(names, new RegExp(`^${NAME}$`, "m"));
    assert.equal((await d.lxcState(renamed)).state, "STOPPED");
  } finally {
    // Renaming it back by the stock client is part of the test: it must work too.
    if (await d.status(renamed) !== undefined) await lxc.ok("rename", renamed, NAME);
  }
});

lxcTest("lxc start starts a stopped container", async () => {
  const d = await daemon();
  await d.ensureStopped(NAME, "bb");
  await (await stockLxc()).ok("start", NAME);
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

lxcTest("lxc delete -f deletes a running container, from LXC and from lxc list", async () => {
  const d = await running();
  const lxc = await stockLxc();
  await lxc.ok("delete", "-f", NAME);
  assert.equal((await d.lxcState(NAME)).state, "");
  assert.equal((await lxc.ok("list", "--format", "csv")).trim(), "");
});
