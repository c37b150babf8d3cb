/** End to end through the real CLI, a real daemon and real LXC containers. */
import assert from "node:assert/strict";
import { readCgroupFile } from "../drivers/lxc/cgroups.ts";
import { Runner } from "../drivers/runner.ts";
import { eventually, TestDaemon, uniqueName } from "./helpers.ts";

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

Deno.test("a container's whole life through the CLI: launch, exec, list, limits, stop, delete", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("c");
    await d.ok(
      "launch",
      "busybox",
      name,
      "-c",
      "limits.memory=64MiB",
      "-c",
      "limits.processes=50",
      "-c",
      "limits.cpu=1",
    );

    // exec: output and exit code propagate.
    const hi = await d.cli("exec", name, "--", "echo", "hi");
    assert.equal(hi.code, 0);
    assert.equal(hi.stdout, "hi\n");
    const three = await d.cli("exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3");
    assert.equal(three.code, 3);
    assert.equal(three.stdout, "out\n");
    assert.match(three.stderr, /err/);

    // list --format json: Running with the pid LXC reports.
    const [inst] = (await listed(d)).filter((i) => i.name === name);
    assert.equal(inst.status, "Running");
    const lxc = await d.lxcState(name);
    assert.equal(lxc.state, "RUNNING");
    assert.equal(inst.state.pid, lxc.pid);

    // Limits are visible in the container's cgroups.
    assert.equal(
      await memoryLimit(lxc.pid),
      String(64 * 2 ** 20),
    );
    assert.equal(await readCgroupFile(runner, lxc.pid, "pids", "pids.max"), "50");
    assert.equal(
      await readCgroupFile(runner, lxc.pid, "cpuset", "cpuset.cpus", "cpuset.cpus.effective"),
      "0",
    );

    // A live limit change reaches the cgroup at once.
    await d.ok("config", "set", name, "limits.memory=96MiB");
    assert.equal(await memoryLimit(lxc.pid), String(96 * 2 ** 20));
    assert.equal((await d.ok("config", "get", name, "limits.memory")).trim(), "96MiB");

    // Unprivileged by default: root in the container is not root on the host.
    const uid = Number(
      (await Deno.readTextFile(`/proc/${lxc.pid}/status`)).match(/^Uid:\s+(\d+)/m)![1],
    );
    assert.notEqual(uid, 0);
    assert.equal((await d.ok("exec", name, "--", "id", "-u")).trim(), "0");

    // Pause and resume.
    await d.ok("pause", name);
    assert.equal((await d.lxcState(name)).state, "FROZEN");
    await d.ok("resume", name);
    assert.equal((await d.lxcState(name)).state, "RUNNING");

    // Restart gives a new init.
    await d.ok("restart", name, "--timeout", "10");
    const after = await d.lxcState(name);
    assert.equal(after.state, "RUNNING");
    assert.notEqual(after.pid, lxc.pid);

    await d.ok("stop", name, "--timeout", "10");
    assert.equal((await d.lxcState(name)).state, "STOPPED");
    assert.equal((await listed(d)).find((i) => i.name === name)?.status, "Stopped");

    await d.ok("delete", name);
    assert.equal((await listed(d)).some((i) => i.name === name), false);
    assert.equal((await d.lxcState(name)).state, "");
  } finally {
    await d.cleanup();
  }
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
    const pid = (await d.lxcState(name)).pid;
    const uid = Number(
      (await Deno.readTextFile(`/proc/${pid}/status`)).match(/^Uid:\s+(\d+)/m)![1],
    );
    assert.equal(uid, 0);
    // Switching back to unprivileged (while stopped) shifts the rootfs and works.
    await d.ok("stop", name, "--force");
    await d.ok("config", "unset", name, "security.privileged");
    await d.ok("start", name);
    const pid2 = (await d.lxcState(name)).pid;
    const uid2 = Number(
      (await Deno.readTextFile(`/proc/${pid2}/status`)).match(/^Uid:\s+(\d+)/m)![1],
    );
    assert.notEqual(uid2, 0);
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
