/** End to end through the real CLI, a real daemon and real LXC containers. */
import assert from "node:assert/strict";
import { readCgroupFile } from "../drivers/lxc/cgroups.ts";
import { Runner } from "../drivers/runner.ts";
import { eventually, sharedDaemon, TestDaemon, uniqueName } from "./helpers.ts";

interface ListedInstance {
  name: string;
  status: string;
  config: Record<string, string>;
  state: { pid: number; status: string };
}

const runner = new Runner();
const memoryLimit = (pid: number) =>
  readCgroupFile(runner, pid, "memory", "memory.limit_in_bytes", "memory.max");

async function listed(d: TestDaemon): Promise<ListedInstance[]> {
  return JSON.parse(await d.ok("list", "--format", "json"));
}

/** The daemon the container-life tests share, with the busybox image. */
const daemon = sharedDaemon((d) => d.importBusybox());
/** The container they share, and the limits it is launched with. */
const NAME = uniqueName("c");
const LIMITS = ["-c", "limits.memory=64MiB", "-c", "limits.processes=50", "-c", "limits.cpu=1"];

/** The shared daemon, with the shared container running (launched or started if need be). */
async function running(): Promise<TestDaemon> {
  const d = await daemon();
  await d.ensureRunning(NAME, "busybox", ...LIMITS);
  return d;
}

/** The host uid a process runs as. */
async function hostUid(pid: number): Promise<number> {
  return Number((await Deno.readTextFile(`/proc/${pid}/status`)).match(/^Uid:\s+(\d+)/m)![1]);
}

Deno.test("exec passes the command's stdout and stderr through apart, even when it fails", async () => {
  const d = await running();
  assert.equal((await d.cli("exec", NAME, "--", "echo", "hi")).stdout, "hi\n");
  const failed = await d.cli("exec", NAME, "--", "sh", "-c", "echo out; echo err >&2; exit 3");
  assert.equal(failed.stdout, "out\n");
  assert.match(failed.stderr, /err/);
});

Deno.test("exec exits with the command's exit code", async () => {
  const d = await running();
  assert.equal((await d.cli("exec", NAME, "--", "true")).code, 0);
  assert.equal((await d.cli("exec", NAME, "--", "sh", "-c", "exit 3")).code, 3);
});

Deno.test("list --format json shows a running container as Running with the pid LXC reports", async () => {
  const d = await running();
  const inst = (await listed(d)).find((i) => i.name === NAME);
  const lxc = await d.lxcState(NAME);
  assert.equal(inst?.status, "Running");
  assert.equal(lxc.state, "RUNNING");
  assert.equal(inst?.state.pid, lxc.pid);
});

Deno.test("the limits a container is launched with are in its cgroups", async () => {
  const d = await running();
  const { pid } = await d.lxcState(NAME);
  assert.equal(await memoryLimit(pid), String(64 * 2 ** 20));
  assert.equal(await readCgroupFile(runner, pid, "pids", "pids.max"), "50");
  assert.equal(
    await readCgroupFile(runner, pid, "cpuset", "cpuset.cpus", "cpuset.cpus.effective"),
    "0",
  );
});

Deno.test("config set limits.memory on a running container reaches its cgroup at once", async () => {
  const d = await running();
  const { pid } = await d.lxcState(NAME);
  try {
    await d.ok("config", "set", NAME, "limits.memory=96MiB");
    assert.equal(await memoryLimit(pid), String(96 * 2 ** 20));
    assert.equal((await d.ok("config", "get", NAME, "limits.memory")).trim(), "96MiB");
  } finally {
    // Back to the launch limit, which the other tests expect.
    await d.cli("config", "set", NAME, "limits.memory=64MiB");
  }
});

Deno.test("a container is unprivileged by default: its root is not root on the host", async () => {
  const d = await running();
  assert.notEqual(await hostUid((await d.lxcState(NAME)).pid), 0);
  assert.equal((await d.ok("exec", NAME, "--", "id", "-u")).trim(), "0");
});

Deno.test("pause freezes a running container and resume thaws it", async () => {
  const d = await running();
  await d.ok("pause", NAME);
  assert.equal((await d.lxcState(NAME)).state, "FROZEN");
  await d.ok("resume", NAME);
  assert.equal((await d.lxcState(NAME)).state, "RUNNING");
});

Deno.test("restart runs the container again under a new init", async () => {
  const d = await running();
  const before = await d.lxcState(NAME);
  await d.ok("restart", NAME, "--timeout", "10");
  const after = await d.lxcState(NAME);
  assert.equal(after.state, "RUNNING");
  assert.notEqual(after.pid, before.pid);
});

Deno.test("stop stops a running container, in LXC and in the list", async () => {
  const d = await running();
  await d.ok("stop", NAME, "--timeout", "10");
  assert.equal((await d.lxcState(NAME)).state, "STOPPED");
  assert.equal((await listed(d)).find((i) => i.name === NAME)?.status, "Stopped");
});

Deno.test("delete removes a stopped container from the list and from LXC", async () => {
  const d = await daemon();
  await d.ensureStopped(NAME, "busybox", ...LIMITS);
  await d.ok("delete", NAME);
  assert.equal((await listed(d)).some((i) => i.name === NAME), false);
  assert.equal((await d.lxcState(NAME)).state, "");
});

Deno.test("bad input gets a one-line error, exit code 1, and changes nothing", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("c");
    await d.ok("launch", "busybox", name);
    // What must not change: every instance's record (live usage counters are left out).
    const records = async () =>
      JSON.parse(await d.ok("list", "--format", "json")).map((
        { state: _state, ...rest }: { state: unknown },
      ) => rest);
    const before = await records();

    const cases: [string[], RegExp][] = [
      [
        ["launch", "busybox", uniqueName("k"), "-c", "limits.bogus=1"],
        /Unknown config key "limits\.bogus"/,
      ],
      [["launch", "busybox", "1-bad-name"], /Invalid instance name "1-bad-name"/],
      [["launch", "no-such-image", uniqueName("m")], /Image "no-such-image" not found/],
      [["launch", "busybox", name], /already exists/],
      [["delete", name], /is running: stop it first or pass --force/],
      [
        ["config", "set", name, "limits.memory=lots"],
        /Invalid value "lots" for config key "limits\.memory"/,
      ],
      [
        ["config", "set", name, "security.privileged=true"],
        /cannot be changed while instance .* is running/,
      ],
      [["start", name], /already running/],
      [["exec", "nope", "--", "true"], /Instance "nope" not found/],
      [["list", "--format", "xml"], /Unknown format "xml"/],
      [["stop", name, "--timeout", "soon"], /Invalid timeout "soon"/],
    ];
    for (const [args, message] of cases) {
      const r = await d.cli(...args);
      assert.equal(r.code, 1, `outpost ${args.join(" ")} should exit 1`);
      assert.match(r.stderr, message, `outpost ${args.join(" ")}`);
      assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
    }
    assert.deepEqual(await records(), before);
    assert.equal((await d.lxcState(name)).state, "RUNNING");

    await d.ok("delete", "--force", name);
    assert.equal((await d.lxcState(name)).state, "");
  } finally {
    await d.cleanup();
  }
});

Deno.test("a kill -9 of the daemon leaves containers running, and a restart finds them", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("c");
    await d.ok("launch", "busybox", name);
    const pid = (await d.lxcState(name)).pid;

    await d.kill9();
    assert.equal((await d.lxcState(name)).state, "RUNNING");
    assert.equal((await d.lxcState(name)).pid, pid);

    await d.spawn();
    const inst = (await listed(d)).find((i) => i.name === name);
    assert.equal(inst?.status, "Running");
    assert.equal(inst?.state.pid, pid);
    assert.equal((await d.ok("exec", name, "--", "echo", "still here")).trim(), "still here");
  } finally {
    await d.cleanup();
  }
});

Deno.test("boot.autostart=true starts the container when the daemon starts", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const auto = uniqueName("a");
    const manual = uniqueName("m");
    await d.ok("launch", "busybox", auto, "-c", "boot.autostart=true");
    await d.ok("launch", "busybox", manual, "-c", "boot.autostart=false");
    await d.stop();
    // The host "rebooted": both containers are down when the daemon comes back.
    for (const n of [auto, manual]) {
      await new Deno.Command("lxc-stop", { args: ["-P", d.lxcPath, "-n", n, "-k"] }).output();
    }
    await d.spawn();
    await eventually(async () => (await d.lxcState(auto)).state === "RUNNING", 10_000, "autostart");
    assert.equal((await d.lxcState(manual)).state, "STOPPED");
  } finally {
    await d.cleanup();
  }
});

Deno.test("security.privileged=true runs the container as host root", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("p");
    await d.ok("launch", "busybox", name, "-c", "security.privileged=true");
    assert.equal(await hostUid((await d.lxcState(name)).pid), 0);
    // Switching back to unprivileged (while stopped) shifts the rootfs and works.
    await d.ok("stop", name, "--force");
    await d.ok("config", "unset", name, "security.privileged");
    await d.ok("start", name);
    assert.notEqual(await hostUid((await d.lxcState(name)).pid), 0);
    assert.equal(
      (await d.ok("exec", name, "--", "sh", "-c", "touch /root/x && ls -n /root/x")).split(
        /\s+/,
      )[2],
      "0",
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("an ephemeral container is deleted when it stops", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("e");
    await d.ok("launch", "busybox", name, "--ephemeral");
    assert.equal((await listed(d)).find((i) => i.name === name)?.status, "Running");
    await d.ok("stop", name, "--force");
    assert.equal((await listed(d)).some((i) => i.name === name), false);
    assert.equal((await d.lxcState(name)).state, "");
  } finally {
    await d.cleanup();
  }
});

Deno.test("rename moves a stopped container, its snapshots and storage; a running one is refused", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("r");
    const other = uniqueName("o");
    const renamed = uniqueName("n");
    await d.ok("launch", "busybox", name);
    await d.ok("init", "busybox", other);
    await d.ok("exec", name, "--", "sh", "-c", "echo kept > /root/mark");
    await d.ok("snapshot", "create", name, "s0");

    const running = await d.cli("rename", name, renamed);
    assert.equal(running.code, 1);
    assert.match(running.stderr, /is running: stop it before renaming it/);
    await d.ok("stop", name, "--force");
    const taken = await d.cli("rename", name, other);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /already exists/);
    const bad = await d.cli("rename", name, "-bad");
    assert.equal(bad.code, 1);

    await d.ok("rename", name, renamed);
    const names = (await listed(d)).map((i) => i.name).sort();
    assert.deepEqual(names, [other, renamed].sort());
    assert.equal((await d.lxcState(name)).state, "");
    await d.ok("start", renamed);
    assert.equal((await d.lxcState(renamed)).state, "RUNNING");
    assert.equal((await d.ok("exec", renamed, "--", "cat", "/root/mark")).trim(), "kept");
    assert.equal((await d.ok("exec", renamed, "--", "hostname")).trim(), renamed);
    const snaps = JSON.parse(await d.ok("snapshot", "list", renamed, "--format", "json"));
    assert.deepEqual(snaps.map((s: { name: string }) => s.name), ["s0"]);
  } finally {
    await d.cleanup();
  }
});
