import assert from "node:assert/strict";
import {
  type CgroupLayout,
  inPayloadCgroup,
  limitConfigLines,
  limitSettings,
  limitsFromConfig,
  parseLayout,
  parseProcCgroup,
  versionOf,
} from "./cgroups.ts";

/** /proc/self/mountinfo of an Ubuntu 20.04 host: v1 controllers plus an empty unified mount. */
const HYBRID_MOUNTINFO = `\
22 27 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
33 22 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 33 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
39 33 0:34 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
40 33 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
41 33 0:36 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
42 33 0:37 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,freezer
43 33 0:38 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,devices
44 33 0:39 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,net_cls,net_prio
`;

/** /proc/self/mountinfo of a Debian 12 host: the unified hierarchy only. */
const V2_MOUNTINFO = `\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
31 22 0:27 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
`;

const V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc\n";

Deno.test("parseLayout() finds each v1 controller's mount on a hybrid host", () => {
  const asked: string[] = [];
  const layout = parseLayout(HYBRID_MOUNTINFO, (m) => {
    asked.push(m);
    return "";
  });
  assert.deepEqual(layout.v1, {
    memory: "/sys/fs/cgroup/memory",
    cpu: "/sys/fs/cgroup/cpu,cpuacct",
    cpuacct: "/sys/fs/cgroup/cpu,cpuacct",
    pids: "/sys/fs/cgroup/pids",
    cpuset: "/sys/fs/cgroup/cpuset",
    freezer: "/sys/fs/cgroup/freezer",
    devices: "/sys/fs/cgroup/devices",
  });
  assert.deepEqual(asked, ["/sys/fs/cgroup/unified"]);
  assert.equal(layout.v2?.mount, "/sys/fs/cgroup/unified");
  assert.equal(layout.v2?.controllers.size, 0);
});

Deno.test("parseLayout() reads the enabled controllers of a pure v2 host", () => {
  const layout = parseLayout(V2_MOUNTINFO, (m) => {
    assert.equal(m, "/sys/fs/cgroup");
    return V2_CONTROLLERS;
  });
  assert.deepEqual(layout.v1, {});
  assert.equal(layout.v2?.mount, "/sys/fs/cgroup");
  assert.deepEqual(
    [...layout.v2!.controllers].sort(),
    ["cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma"],
  );
});

Deno.test("parseLayout() treats an unreadable controllers file as no controllers", () => {
  const layout = parseLayout(V2_MOUNTINFO, () => {
    throw new Error("ENOENT");
  });
  assert.equal(layout.v2?.mount, "/sys/fs/cgroup");
  assert.equal(layout.v2?.controllers.size, 0);
});

Deno.test("parseLayout() of text without cgroup mounts is an empty layout", () => {
  const layout = parseLayout("", () => "");
  assert.deepEqual(layout.v1, {});
  assert.equal(layout.v2, undefined);
});

Deno.test("versionOf() prefers v1 where a controller is mounted there", () => {
  const hybrid = parseLayout(HYBRID_MOUNTINFO, () => "memory pids");
  assert.equal(versionOf(hybrid, "memory"), 1);
  assert.equal(versionOf(hybrid, "pids"), 1);
  assert.equal(versionOf(hybrid, "cpuset"), 1);
  assert.equal(versionOf(hybrid, "cpuacct"), 1);
});

Deno.test("versionOf() answers 2 for controllers enabled on the unified hierarchy", () => {
  const v2 = parseLayout(V2_MOUNTINFO, () => V2_CONTROLLERS);
  assert.equal(versionOf(v2, "memory"), 2);
  assert.equal(versionOf(v2, "pids"), 2);
  assert.equal(versionOf(v2, "cpuset"), 2);
  assert.equal(versionOf(v2, "cpu"), 2);
  // cpuacct's counters live in the v2 cpu controller.
  assert.equal(versionOf(v2, "cpuacct"), 2);
});

Deno.test("versionOf() answers undefined for a controller no hierarchy has", () => {
  const v2 = parseLayout(V2_MOUNTINFO, () => "memory");
  assert.equal(versionOf(v2, "pids"), undefined);
  assert.equal(versionOf(v2, "cpuacct"), undefined);
  assert.equal(versionOf({ v1: {} }, "memory"), undefined);
  const mixed: CgroupLayout = {
    v1: { memory: "/sys/fs/cgroup/memory" },
    v2: { mount: "/sys/fs/cgroup/unified", controllers: new Set(["pids"]) },
  };
  assert.equal(versionOf(mixed, "memory"), 1);
  assert.equal(versionOf(mixed, "pids"), 2);
  assert.equal(versionOf(mixed, "cpuset"), undefined);
});

const host = { cpus: 4, memory: 8 * 2 ** 30 };

Deno.test("limitsFromConfig() is empty for a config without limits", () => {
  assert.deepEqual(limitsFromConfig({ "user.x": "y" }, host), {});
});

Deno.test("limitsFromConfig() reads memory sizes and percentages of host memory", () => {
  assert.equal(limitsFromConfig({ "limits.memory": "64MiB" }, host).memoryBytes, 67_108_864);
  assert.equal(limitsFromConfig({ "limits.memory": "1GB" }, host).memoryBytes, 1e9);
  assert.equal(limitsFromConfig({ "limits.memory": "50%" }, host).memoryBytes, 4 * 2 ** 30);
  assert.equal(limitsFromConfig({ "limits.memory": "12.5%" }, host).memoryBytes, 2 ** 30);
  assert.equal(
    limitsFromConfig({ "limits.memory": "33%" }, { cpus: 1, memory: 1000 }).memoryBytes,
    330,
  );
});

Deno.test("limitsFromConfig() reads limits.processes as a pid limit", () => {
  assert.equal(limitsFromConfig({ "limits.processes": "100" }, host).pids, 100);
});

Deno.test("limitsFromConfig() turns a CPU count into the first N CPUs, clamped to the host", () => {
  assert.equal(limitsFromConfig({ "limits.cpu": "1" }, host).cpuset, "0");
  assert.equal(limitsFromConfig({ "limits.cpu": "2" }, host).cpuset, "0-1");
  assert.equal(limitsFromConfig({ "limits.cpu": "4" }, host).cpuset, "0-3");
  assert.equal(limitsFromConfig({ "limits.cpu": "64" }, host).cpuset, "0-3");
  assert.equal(limitsFromConfig({ "limits.cpu": "8" }, { cpus: 1, memory: 1 }).cpuset, "0");
});

Deno.test("limitsFromConfig() keeps a CPU set's CPUs that the host has", () => {
  assert.equal(limitsFromConfig({ "limits.cpu": "0-1,3" }, host).cpuset, "0,1,3");
  assert.equal(limitsFromConfig({ "limits.cpu": "2-7" }, host).cpuset, "2,3");
  assert.equal(limitsFromConfig({ "limits.cpu": "3,1" }, host).cpuset, "1,3");
  // A set with none of the host's CPUs falls back to CPU 0 rather than an empty set.
  assert.equal(limitsFromConfig({ "limits.cpu": "6,7" }, host).cpuset, "0");
});

const V1: CgroupLayout = parseLayout(HYBRID_MOUNTINFO, () => "");
const V2: CgroupLayout = parseLayout(V2_MOUNTINFO, () => V2_CONTROLLERS);

Deno.test("limitSettings() resets unset limits on v1 with -1 and max", () => {
  assert.deepEqual(limitSettings(V1, {}, 4), [
    { version: 1, key: "memory.limit_in_bytes", value: "-1" },
    { version: 1, key: "pids.max", value: "max" },
    { version: 1, key: "cpuset.cpus", value: "0-3" },
  ]);
});

Deno.test("limitSettings() resets unset limits on v2 with max and every host CPU", () => {
  assert.deepEqual(limitSettings(V2, {}, 4), [
    { version: 2, key: "memory.max", value: "max" },
    { version: 2, key: "pids.max", value: "max" },
    { version: 2, key: "cpuset.cpus", value: "0-3" },
  ]);
  assert.equal(limitSettings(V2, {}, 1).find((s) => s.key === "cpuset.cpus")?.value, "0");
});

Deno.test("limitSettings() writes the limits that are set", () => {
  const limits = { memoryBytes: 67_108_864, pids: 100, cpuset: "0-1" };
  assert.deepEqual(limitSettings(V1, limits, 4), [
    { version: 1, key: "memory.limit_in_bytes", value: "67108864" },
    { version: 1, key: "pids.max", value: "100" },
    { version: 1, key: "cpuset.cpus", value: "0-1" },
  ]);
  assert.deepEqual(limitSettings(V2, limits, 4), [
    { version: 2, key: "memory.max", value: "67108864" },
    { version: 2, key: "pids.max", value: "100" },
    { version: 2, key: "cpuset.cpus", value: "0-1" },
  ]);
});

Deno.test("limitSettings() skips controllers the host does not have", () => {
  const onlyMemory = parseLayout(V2_MOUNTINFO, () => "memory");
  assert.deepEqual(limitSettings(onlyMemory, { pids: 5, cpuset: "0" }, 4), [
    { version: 2, key: "memory.max", value: "max" },
  ]);
  assert.deepEqual(limitSettings({ v1: {} }, { memoryBytes: 1 }, 4), []);
});

Deno.test("limitConfigLines() writes only the limits that are set, with the version's prefix", () => {
  assert.deepEqual(limitConfigLines(V1, {}), []);
  assert.deepEqual(limitConfigLines(V1, { pids: 10 }), ["lxc.cgroup.pids.max = 10"]);
  assert.deepEqual(limitConfigLines(V2, { memoryBytes: 1024, cpuset: "0,2" }), [
    "lxc.cgroup2.memory.max = 1024",
    "lxc.cgroup2.cpuset.cpus = 0,2",
  ]);
});

Deno.test("inPayloadCgroup() takes a container's top-level payload cgroup, not one another container named alike", () => {
  const of = (text: string) => parseProcCgroup(text);
  assert.equal(inPayloadCgroup(of("4:memory:/lxc.payload.c1\n0::/lxc.payload.c1\n"), "c1"), true);
  assert.equal(inPayloadCgroup(of("0::/lxc.payload.c1/init.scope\n"), "c1"), true);
  assert.equal(inPayloadCgroup(of("0::/lxc.payload.evil/lxc.payload.c1\n"), "c1"), false);
  assert.equal(inPayloadCgroup(of("4:memory:/lxc.payload.c10\n"), "c1"), false);
  assert.equal(inPayloadCgroup(of("4:memory:/\n0::/\n"), "c1"), false);
});
