import assert from "node:assert/strict";
import type { CgroupLayout } from "./cgroups.ts";
import { checkLine, lxcConfig, type LxcConfigInput } from "./config.ts";

/** A hybrid host: every controller on v1, an empty unified hierarchy beside them. */
const V1: CgroupLayout = {
  v1: {
    memory: "/sys/fs/cgroup/memory",
    pids: "/sys/fs/cgroup/pids",
    cpuset: "/sys/fs/cgroup/cpuset",
    cpu: "/sys/fs/cgroup/cpu,cpuacct",
    cpuacct: "/sys/fs/cgroup/cpu,cpuacct",
    freezer: "/sys/fs/cgroup/freezer",
    devices: "/sys/fs/cgroup/devices",
  },
  v2: { mount: "/sys/fs/cgroup/unified", controllers: new Set() },
};

/** A pure v2 host. */
const V2: CgroupLayout = {
  v1: {},
  v2: { mount: "/sys/fs/cgroup", controllers: new Set(["cpuset", "cpu", "io", "memory", "pids"]) },
};

function input(config: Record<string, string>, layout = V2): LxcConfigInput {
  return {
    name: "c1",
    dir: "/var/lib/outpost/containers/c1",
    config,
    idmap: { uid: { hostBase: 1000000, size: 65536 }, gid: { hostBase: 2000000, size: 65536 } },
    layout,
    host: { cpus: 4, memory: 8 * 2 ** 30 },
  };
}

function lines(text: string): string[] {
  return text.trimEnd().split("\n");
}

Deno.test("lxcConfig() names the container and points at its rootfs, console and log", () => {
  const text = lxcConfig(input({}));
  assert.ok(text.endsWith("\n"));
  const l = lines(text);
  assert.ok(l.includes("lxc.uts.name = c1"));
  assert.ok(l.includes("lxc.rootfs.path = dir:/var/lib/outpost/containers/c1/rootfs"));
  assert.ok(l.includes("lxc.console.logfile = /var/lib/outpost/containers/c1/console.log"));
  assert.ok(l.includes("lxc.log.file = /var/lib/outpost/containers/c1/lxc.log"));
});

Deno.test("lxcConfig() maps an unprivileged container into the host id range", () => {
  const l = lines(lxcConfig(input({})));
  assert.ok(l.includes("lxc.idmap = u 0 1000000 65536"));
  assert.ok(l.includes("lxc.idmap = g 0 2000000 65536"));
  assert.equal(l.filter((x) => x.includes("devices")).length, 0);
  assert.ok(l.includes("lxc.mount.auto = proc:mixed sys:rw cgroup:mixed"));
});

Deno.test("lxcConfig() treats security.privileged=false like the default", () => {
  assert.equal(
    lxcConfig(input({ "security.privileged": "false" })),
    lxcConfig(input({})),
  );
});

Deno.test("lxcConfig() gives a privileged container no id map and a v1 devices allow-list", () => {
  for (const value of ["true", "1"]) {
    const l = lines(lxcConfig(input({ "security.privileged": value }, V1)));
    assert.equal(l.filter((x) => x.startsWith("lxc.idmap")).length, 0);
    assert.ok(l.includes("lxc.cgroup.devices.deny = a"));
    assert.ok(l.includes("lxc.cgroup.devices.allow = c 1:3 rwm"));
    assert.ok(l.includes("lxc.cgroup.devices.allow = c 136:* rwm"));
    assert.ok(
      l.indexOf("lxc.cgroup.devices.deny = a") < l.indexOf("lxc.cgroup.devices.allow = c 1:3 rwm"),
    );
    assert.ok(l.includes("lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed"));
  }
});

Deno.test("lxcConfig() uses cgroup2 device keys for a privileged container on a v2 host", () => {
  const l = lines(lxcConfig(input({ "security.privileged": "true" }, V2)));
  assert.ok(l.includes("lxc.cgroup2.devices.deny = a"));
  assert.ok(l.includes("lxc.cgroup2.devices.allow = c 1:5 rwm"));
  assert.equal(l.filter((x) => x.startsWith("lxc.cgroup.")).length, 0);
});

Deno.test("lxcConfig() writes limits as cgroup v1 keys on a v1 host", () => {
  const l = lines(lxcConfig(input({
    "limits.memory": "64MiB",
    "limits.processes": "100",
    "limits.cpu": "2",
  }, V1)));
  assert.ok(l.includes("lxc.cgroup.memory.limit_in_bytes = 67108864"));
  assert.ok(l.includes("lxc.cgroup.pids.max = 100"));
  assert.ok(l.includes("lxc.cgroup.cpuset.cpus = 0-1"));
  assert.equal(l.filter((x) => x.startsWith("lxc.cgroup2.")).length, 0);
});

Deno.test("lxcConfig() writes limits as cgroup2 keys on a v2 host", () => {
  const l = lines(lxcConfig(input({
    "limits.memory": "1GB",
    "limits.processes": "50",
    "limits.cpu": "0,2",
  }, V2)));
  assert.ok(l.includes("lxc.cgroup2.memory.max = 1000000000"));
  assert.ok(l.includes("lxc.cgroup2.pids.max = 50"));
  assert.ok(l.includes("lxc.cgroup2.cpuset.cpus = 0,2"));
  assert.equal(l.filter((x) => x.startsWith("lxc.cgroup.")).length, 0);
});

Deno.test("lxcConfig() resolves a memory percentage against the host's memory", () => {
  const l = lines(lxcConfig(input({ "limits.memory": "50%" }, V2)));
  assert.ok(l.includes(`lxc.cgroup2.memory.max = ${4 * 2 ** 30}`));
});

Deno.test("lxcConfig() writes no limit lines when no limits are set", () => {
  const l = lines(lxcConfig(input({}, V1)));
  assert.equal(l.filter((x) => /^lxc\.cgroup2?\.(memory|pids|cpuset)/.test(x)).length, 0);
});

Deno.test("lxcConfig() turns environment.* keys into lxc.environment lines", () => {
  const l = lines(lxcConfig(input({
    "environment.FOO": "bar",
    "environment.MULTI": "a\nb",
    "user.note": "not env",
  })));
  assert.ok(l.includes("lxc.environment = FOO=bar"));
  assert.ok(l.includes("lxc.environment = MULTI=a b"));
  assert.equal(l.filter((x) => x.startsWith("lxc.environment")).length, 2);
});

Deno.test("lxcConfig() mounts proc, sys and cgroup read-write for nesting and drops seccomp", () => {
  const plain = lines(lxcConfig({ ...input({}), seccompProfile: "/etc/outpost/seccomp" }));
  assert.ok(plain.includes("lxc.seccomp.profile = /etc/outpost/seccomp"));
  const nested = lines(
    lxcConfig({ ...input({ "security.nesting": "true" }), seccompProfile: "/etc/outpost/seccomp" }),
  );
  assert.ok(nested.includes("lxc.mount.auto = proc:rw sys:rw cgroup:rw"));
  assert.equal(nested.filter((x) => x.startsWith("lxc.mount.auto")).length, 1);
  assert.equal(nested.filter((x) => x.startsWith("lxc.seccomp")).length, 0);
});

Deno.test("lxcConfig() writes each key on its own line as `key = value`", () => {
  const l = lines(lxcConfig(input({ "limits.memory": "64MiB", "environment.A": "b" }, V1)));
  for (const line of l) {
    if (line.startsWith("#")) continue;
    assert.match(line, /^lxc\.[a-z0-9_.]+ = \S/, `malformed line "${line}"`);
  }
});

Deno.test("lxcConfig() never lets a stored value start a line of its own", () => {
  const text = lxcConfig(input({
    "environment.Z": 'x\nlxc.hook.pre-start = /bin/sh -c "id > /tmp/x"\r\nlxc.environment = W',
    "environment.BAD NAME\nlxc.mount.entry": "/etc etc none bind 0 0",
  }));
  const l = lines(text);
  assert.equal(l.filter((x) => x.startsWith("lxc.hook")).length, 0);
  assert.equal(l.filter((x) => x.startsWith("lxc.mount.entry")).length, 1); // fuse only
  assert.equal(l.filter((x) => x.startsWith("lxc.environment")).length, 1);
});

Deno.test("checkLine() refuses control characters and empty values", () => {
  assert.throws(() => checkLine("lxc.environment = A=b\nlxc.hook.start = x"));
  assert.throws(() => checkLine("lxc.uts.name = "));
  assert.throws(() => checkLine("lxc.uts.name = a\u0000"));
  checkLine("lxc.environment = A=b c");
});

Deno.test("lxcConfig() gives each planned nic a veth pair on its bridge, and none without", () => {
  assert.doesNotMatch(lxcConfig(input({})), /lxc\.net\./);
  const text = lxcConfig({
    ...input({}),
    nics: [
      {
        device: "eth0",
        name: "eth0",
        hwaddr: "10:66:6a:00:00:01",
        hostName: "veth01",
        bridge: "br0",
      },
      {
        device: "lan",
        name: "lan0",
        hwaddr: "10:66:6a:00:00:02",
        hostName: "veth02",
        bridge: "br1",
        mtu: 1400,
      },
    ],
  });
  const net = text.split("\n").filter((l) => l.startsWith("lxc.net."));
  assert.deepEqual(net, [
    "lxc.net.0.type = veth",
    "lxc.net.0.link = br0",
    "lxc.net.0.name = eth0",
    "lxc.net.0.hwaddr = 10:66:6a:00:00:01",
    "lxc.net.0.veth.pair = veth01",
    "lxc.net.0.flags = up",
    "lxc.net.1.type = veth",
    "lxc.net.1.link = br1",
    "lxc.net.1.name = lan0",
    "lxc.net.1.hwaddr = 10:66:6a:00:00:02",
    "lxc.net.1.veth.pair = veth02",
    "lxc.net.1.flags = up",
    "lxc.net.1.mtu = 1400",
  ]);
});

Deno.test("lxcConfig() bind-mounts host directories: read-only and idmapped when asked", () => {
  const mounts = [
    { device: "a", source: "/srv/a", path: "/mnt/a", readonly: true, shift: true },
    { device: "b", source: "/srv/b", path: "/b", readonly: false, shift: false },
  ];
  const entries = (config: Record<string, string>) =>
    lxcConfig({ ...input(config), mounts }).split("\n").filter((l) =>
      l.startsWith("lxc.mount.entry = /srv")
    );
  assert.deepEqual(entries({}), [
    "lxc.mount.entry = /srv/a mnt/a none bind,create=dir,ro,idmap=container 0 0",
    "lxc.mount.entry = /srv/b b none bind,create=dir 0 0",
  ]);
  // A privileged container sees the host's ids as they are: nothing to shift.
  assert.deepEqual(
    entries({ "security.privileged": "true" })[0],
    "lxc.mount.entry = /srv/a mnt/a none bind,create=dir,ro 0 0",
  );
});
