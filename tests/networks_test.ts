/**
 * Managed networks end to end: a real bridge, nftables table and dnsmasq made by a real daemon,
 * real containers on it getting DHCP addresses and resolving each other by name. Each test makes
 * its own bridge (a unique name, a free subnet) and leaves the host as it found it: bridge, rules,
 * dnsmasq and the ip_forward setting.
 */
import assert from "node:assert/strict";
import { HAS_LXC, HAS_QEMU, StockLxc, TestDaemon, uniqueName, waitUntil } from "./helpers.ts";

const decoder = new TextDecoder();

async function sh(...argv: string[]): Promise<{ code: number; stdout: string }> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout) };
}

interface Listed {
  name: string;
  state: { network: Record<string, { addresses: { family: string; address: string }[] }> };
}

/** The IPv4 address of `eth0` in a running container, as `outpost list` shows it. */
async function ipv4Of(d: TestDaemon, name: string): Promise<string | undefined> {
  const all: Listed[] = JSON.parse(await d.ok("list", "--format", "json"));
  return all.find((i) => i.name === name)?.state.network?.eth0?.addresses
    .find((a) => a.family === "inet")?.address;
}

/** A bridge name of the form a network takes (lower case, at most 15 characters). */
function bridgeName(): string {
  return `ot${crypto.randomUUID().slice(0, 8)}`;
}

/** What a network leaves on the host: its bridge, its nftables table, its dnsmasq. */
async function leftovers(bridge: string): Promise<string[]> {
  const left: string[] = [];
  if ((await sh("ip", "link", "show", "dev", bridge)).code === 0) left.push("bridge");
  const table = `outpost_${bridge.replaceAll("-", "_")}`;
  if ((await sh("nft", "list", "table", "ip", table)).code === 0) left.push("nft table");
  if ((await sh("nft", "list", "table", "ip6", table)).code === 0) left.push("nft ip6 table");
  const procs = await sh("pgrep", "-af", `networks/${bridge}/`);
  if (procs.stdout.split("\n").some((l) => l.includes("dnsmasq"))) left.push("dnsmasq");
  return left;
}

/** Removes whatever a failed test left of a network. */
async function scrub(bridge: string): Promise<void> {
  const tag = `outpost_${bridge.replaceAll("-", "_")}`;
  for (const tool of ["iptables", "ip6tables"]) {
    for (const line of (await sh(tool, "-t", "nat", "-S", "POSTROUTING")).stdout.split("\n")) {
      if (line.includes(`--comment ${tag}`)) {
        await sh(tool, "-t", "nat", "-D", ...line.trim().split(/\s+/).slice(1));
      }
    }
  }
  await sh("pkill", "-f", `networks/${bridge}/dnsmasq`);
  await sh("nft", "delete", "table", "ip", `outpost_${bridge.replaceAll("-", "_")}`);
  await sh("nft", "delete", "table", "ip6", `outpost_${bridge.replaceAll("-", "_")}`);
  await sh("ip", "link", "del", "dev", bridge);
}

const forwarding = () => Deno.readTextFile("/proc/sys/net/ipv4/ip_forward");

/**
 * Runs `fn` with a fresh daemon (the busybox image as "bb") and a bridge name of its own; what the
 * test leaves of the network and its instances goes, and ip_forward is put back as it was.
 */
async function withNetwork(fn: (d: TestDaemon, net: string) => Promise<void>): Promise<void> {
  const forwardBefore = await forwarding();
  const ipv6Before = await ipv6Settings();
  const d = await TestDaemon.start();
  const net = bridgeName();
  try {
    await d.importBusybox("bb");
    await fn(d, net);
  } finally {
    await d.cleanup();
    await scrub(net);
    await Deno.writeTextFile("/proc/sys/net/ipv4/ip_forward", forwardBefore);
    for (const [file, value] of ipv6Before) await Deno.writeTextFile(file, value).catch(() => {});
  }
}

/** IPv6 forwarding and each interface's accept_ra (an IPv6 network with NAT changes them). */
async function ipv6Settings(): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const e of Deno.readDirSync("/proc/sys/net/ipv6/conf")) {
    const f = `/proc/sys/net/ipv6/conf/${e.name}/accept_ra`;
    out.push([f, await Deno.readTextFile(f).catch(() => "")]);
  }
  // Forwarding last: set back before it, accept_ra=1 would be ignored anyway.
  const fwd = "/proc/sys/net/ipv6/conf/all/forwarding";
  out.unshift([fwd, await Deno.readTextFile(fwd)]);
  return out.filter(([, v]) => v !== "");
}

/** A profile that puts an eth0 on `net`; its name. */
async function nicProfile(d: TestDaemon, net: string): Promise<string> {
  await d.ok("profile", "create", `p-${net}`);
  await d.ok("profile", "device", "add", `p-${net}`, "eth0", "nic", `network=${net}`);
  return `p-${net}`;
}

Deno.test({
  name: "two containers on a managed bridge get DHCP addresses, a fixed one sticks, they reach " +
    "each other by name, and deleting the network leaves no bridge, rule or dnsmasq",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNetwork(async (d, net) => {
      const [c1, c2] = [uniqueName("n1"), uniqueName("n2")];
      const created = await d.cli("network", "create", net, "--description", "test bridge");
      assert.equal(created.code, 0, created.stderr);
      const cidr = (await d.ok("network", "get", net, "ipv4.address")).trim();
      assert.match(cidr, /^10\.\d+\.\d+\.1\/24$/);
      const prefix = cidr.split(".").slice(0, 3).join(".");
      // The host side: the bridge has the address, NAT is on, dnsmasq serves it.
      assert.match((await sh("ip", "-4", "addr", "show", "dev", net)).stdout, new RegExp(cidr));
      const rules = await sh("nft", "list", "table", "ip", `outpost_${net}`);
      assert.match(rules.stdout, new RegExp(`ip saddr ${prefix}\\.0/24 .*masquerade`));
      assert.deepEqual(await leftovers(net), ["bridge", "nft table", "dnsmasq"]);

      const p = await nicProfile(d, net);
      await d.ok("launch", "bb", c1, "-p", "default", "-p", p);
      await d.ok("init", "bb", c2, "-p", "default", "-p", p);
      await d.ok("config", "device", "override", c2, "eth0", `ipv4.address=${prefix}.50`);
      await d.ok("start", c2);

      let a1: string | undefined;
      await waitUntil("c1's lease", async () => (a1 = await ipv4Of(d, c1)) !== undefined);
      await waitUntil("c2's fixed lease", async () => (await ipv4Of(d, c2)) === `${prefix}.50`);
      assert.ok(a1!.startsWith(`${prefix}.`), a1);
      // By name, through the network's dnsmasq, and across the bridge.
      const looked = await d.cli("exec", c1, "--", "nslookup", `${c2}.outpost`);
      assert.match(looked.stdout, new RegExp(`${prefix}\\.50`), looked.stdout + looked.stderr);
      const ping = await d.cli("exec", c1, "--", "ping", "-c", "1", "-W", "5", c2);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      const back = await d.cli("exec", c2, "--", "ping", "-c", "1", "-W", "5", c1);
      assert.equal(back.code, 0, back.stdout + back.stderr);

      const leases = await d.ok("network", "list-leases", net, "--format", "csv");
      assert.match(leases, new RegExp(`^${c2},10:66:6a:[0-9a-f:]+,${prefix}\\.50,STATIC$`, "m"));
      assert.match(leases, new RegExp(`^${c1},10:66:6a:[0-9a-f:]+,${a1},DYNAMIC$`, "m"));
      if (HAS_LXC) {
        const lxc = await StockLxc.for(d);
        assert.match(
          await lxc.ok("list", c2, "--format", "csv", "-c", "n4"),
          new RegExp(`${prefix}\\.50 \\(eth0\\)`),
        );
        assert.match(
          await lxc.ok("network", "list"),
          new RegExp(`\\| ${net} +\\| bridge +\\| YES`),
        );
        assert.match(await lxc.ok("network", "list-leases", net), new RegExp(`\\| ${c2} +\\|`));
        assert.match(await lxc.ok("network", "show", net), new RegExp(`/1.0/instances/${c1}`));
      }
      // In use: not deleted.
      const inUse = await d.cli("network", "delete", net);
      assert.equal(inUse.code, 1);
      assert.match(inUse.stderr, /is in use by/);

      // A daemon restart brings dnsmasq back if it died, and keeps the containers' network.
      await sh("pkill", "-f", `networks/${net}/dnsmasq`);
      await d.stop();
      await d.spawn();
      await waitUntil("dnsmasq back", async () => (await leftovers(net)).includes("dnsmasq"));
      const again = await d.cli("exec", c1, "--", "nslookup", `${c2}.outpost`);
      assert.match(again.stdout, new RegExp(`${prefix}\\.50`));

      // A container that takes a MAC of its own and asks DHCP for a name gets an address but not
      // the name: names come only from the daemon's host entries.
      const claim = await d.cli(
        "exec",
        c1,
        "--",
        "sh",
        "-c",
        "ip link set eth0 down && ip link set eth0 address 02:00:00:00:42:42 && " +
          "ip link set eth0 up && udhcpc -i eth0 -n -q -x hostname:phantom",
      );
      assert.equal(claim.code, 0, claim.stdout + claim.stderr);
      await waitUntil("the new lease", async () =>
        (await d.ok("network", "list-leases", net, "--format", "csv")).includes(
          "02:00:00:00:42:42",
        ));
      const phantom = await d.cli("exec", c2, "--", "nslookup", "phantom.outpost");
      assert.notEqual(phantom.code, 0, phantom.stdout);
      assert.match(phantom.stdout, /NXDOMAIN/);
      assert.doesNotMatch(phantom.stdout, /Name:\s+phantom/);

      await d.ok("delete", c1, c2, "--force");
      await d.ok("profile", "delete", p);
      await d.ok("network", "delete", net);
      assert.deepEqual(await leftovers(net), []);
    }),
});

/** The global IPv6 addresses of `eth0` in a running container, from the API's state. */
async function ipv6Of(d: TestDaemon, name: string, prefix: string): Promise<string | undefined> {
  const st = await d.api.get<Listed["state"]>(`/1.0/instances/${name}/state`);
  return st.network?.eth0?.addresses.find((a) =>
    a.family === "inet6" && a.address.startsWith(prefix)
  )?.address;
}

Deno.test({
  name: "IPv6: a bridge with a unique local /64 gives containers SLAAC addresses they reach " +
    "each other on; its ip6 table goes with it",
  ignore: !HAS_LXC,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNetwork(async (d, net) => {
      const [c1, c2] = [uniqueName("s1"), uniqueName("s2")];
      await d.ok("network", "create", net, "ipv6.address=auto");
      const cidr = (await d.ok("network", "get", net, "ipv6.address")).trim();
      assert.match(cidr, /^fd[0-9a-f]{2}:[0-9a-f:]+::1\/64$/);
      const prefix = cidr.replace(/::1\/64$/, ":");
      assert.match((await sh("ip", "-6", "addr", "show", "dev", net)).stdout, new RegExp(cidr));
      const table = `outpost_${net.replaceAll("-", "_")}`;
      assert.match((await sh("nft", "list", "table", "ip6", table)).stdout, /masquerade/);
      const p = await nicProfile(d, net);
      await d.ok("launch", "bb", c1, "-p", "default", "-p", p);
      await d.ok("launch", "bb", c2, "-p", "default", "-p", p);
      let a2: string | undefined;
      await waitUntil("c1's SLAAC address", async () => !!(await ipv6Of(d, c1, prefix)));
      await waitUntil("c2's SLAAC address", async () => !!(a2 = await ipv6Of(d, c2, prefix)));
      const ping = await d.cli("exec", c1, "--", "ping", "-6", "-c", "1", "-W", "5", a2!);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      const gw = await d.cli(
        "exec",
        c2,
        "--",
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "5",
        cidr.split("/")[0],
      );
      assert.equal(gw.code, 0, gw.stdout + gw.stderr);
      const bad = await d.cli("network", "set", net, "ipv6.address=fd00::/64");
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /ipv6\.address/);

      await d.ok("delete", c1, c2, "--force");
      await d.ok("profile", "delete", p);
      await d.ok("network", "delete", net);
      assert.deepEqual(await leftovers(net), []);
    }),
});

Deno.test({
  name:
    "where nftables is missing: NAT through iptables and ip6tables, tagged rules that go with " +
    "the network",
  ignore: !HAS_LXC,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // The daemon reads OUTPOST_FIREWALL at start; the daemons of later tests start without it.
    Deno.env.set("OUTPOST_FIREWALL", "iptables");
    try {
      await withNetwork(async (d, net) => {
        Deno.env.delete("OUTPOST_FIREWALL");
        const name = uniqueName("ip");
        await d.ok("network", "create", net, "ipv6.address=auto");
        const cidr = (await d.ok("network", "get", net, "ipv4.address")).trim();
        const subnet = `${cidr.split(".").slice(0, 3).join(".")}.0/24`;
        const tag = `outpost_${net.replaceAll("-", "_")}`;
        const rules4 = (await sh("iptables", "-t", "nat", "-S", "POSTROUTING")).stdout;
        assert.match(
          rules4,
          new RegExp(`-s ${subnet} ! -d ${subnet} ! -o ${net} .*--comment ${tag} -j MASQUERADE`),
        );
        assert.match(
          (await sh("ip6tables", "-t", "nat", "-S", "POSTROUTING")).stdout,
          new RegExp(tag),
        );
        assert.equal((await sh("nft", "list", "table", "ip", tag)).code, 1, "no nftables table");
        // A change replaces the rules, never adds a second copy.
        await d.ok("network", "set", net, "dns.domain=lab");
        const again = (await sh("iptables", "-t", "nat", "-S", "POSTROUTING")).stdout;
        assert.equal(again.split(tag).length - 1, 1);

        const p = await nicProfile(d, net);
        await d.ok("launch", "bb", name, "-p", "default", "-p", p);
        await waitUntil("a lease", async () => (await ipv4Of(d, name)) !== undefined);
        await d.ok("delete", name, "--force");
        await d.ok("profile", "delete", p);
        await d.ok("network", "delete", net);
        assert.doesNotMatch((await sh("iptables", "-t", "nat", "-S")).stdout, new RegExp(tag));
        assert.doesNotMatch((await sh("ip6tables", "-t", "nat", "-S")).stdout, new RegExp(tag));
        assert.deepEqual(await leftovers(net), []);
      });
    } finally {
      Deno.env.delete("OUTPOST_FIREWALL");
    }
  },
});

Deno.test({
  name: "a nic on a host bridge outpost does not manage (nictype=bridged), and a point-to-point " +
    "one (nictype=p2p) whose host side the host configures",
  ignore: !HAS_LXC,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNetwork(async (d, br) => {
      const [c1, c2] = [uniqueName("hb"), uniqueName("pp")];
      const veth = `vp${crypto.randomUUID().slice(0, 8)}`;
      try {
        await sh("ip", "link", "add", "dev", br, "type", "bridge");
        await sh("ip", "addr", "add", "192.168.251.1/24", "dev", br);
        await sh("ip", "link", "set", "dev", br, "up");
        await d.ok("init", "bb", c1);
        await d.ok("config", "device", "add", c1, "lan", "nic", "nictype=bridged", `parent=${br}`);
        await d.ok("start", c1);
        await d.ok(
          "exec",
          c1,
          "--",
          "sh",
          "-c",
          "ip addr add 192.168.251.2/24 dev lan && ping -c 1 -W 5 192.168.251.1",
        );
        assert.match((await sh("ip", "link", "show", "master", br)).stdout, /veth/);

        await d.ok("init", "bb", c2);
        await d.ok(
          "config",
          "device",
          "add",
          c2,
          "p0",
          "nic",
          "nictype=p2p",
          `host_name=${veth}`,
        );
        await d.ok("start", c2);
        assert.doesNotMatch((await sh("ip", "link", "show", "dev", veth)).stdout, /master/);
        await sh("ip", "addr", "add", "169.254.77.1/30", "dev", veth);
        await d.ok(
          "exec",
          c2,
          "--",
          "sh",
          "-c",
          "ip addr add 169.254.77.2/30 dev p0 && ping -c 1 -W 5 169.254.77.1",
        );

        const refused: [string[], RegExp][] = [
          [["nictype=bridged"], /needs "parent"/],
          [["nictype=p2p", `parent=${br}`], /takes no "parent"/],
          [["nictype=bogus"], /invalid "nictype"/],
          [[], /needs "network"/],
        ];
        for (const [keys, why] of refused) {
          const r = await d.cli("config", "device", "add", c2, "bad", "nic", ...keys);
          assert.equal(r.code, 1);
          assert.match(r.stderr, why);
        }
        await d.ok("stop", c1, "--force");
        await d.ok("config", "device", "set", c1, "lan", "parent=lo");
        const notBridge = await d.cli("start", c1);
        assert.match(notBridge.stderr, /parent "lo" is not a bridge on the host/);
      } finally {
        await d.cli("delete", c1, c2, "--force");
        await sh("ip", "link", "del", "dev", br);
      }
    }),
});

Deno.test({
  name:
    "a network no instance uses is renamed with its bridge, rules and dnsmasq; one in use is not",
  ignore: !HAS_LXC,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNetwork(async (d, net) => {
      const to = bridgeName();
      const name = uniqueName("rn");
      try {
        await d.ok("network", "create", net);
        const cidr = (await d.ok("network", "get", net, "ipv4.address")).trim();
        const p = await nicProfile(d, net);
        await d.ok("init", "bb", name, "-p", "default", "-p", p);
        const used = await d.cli("network", "rename", net, to);
        assert.equal(used.code, 1);
        assert.match(used.stderr, /in use by .*cannot be renamed/);
        await d.ok("delete", name);
        await d.ok("profile", "delete", p);
        const taken = await d.cli("network", "rename", net, "lo");
        assert.match(taken.stderr, /already has an interface named "lo"/);
        const bad = await d.cli("network", "rename", net, "Bad Name");
        assert.match(bad.stderr, /Invalid network name/);

        await d.ok("network", "rename", net, to);
        assert.deepEqual(await leftovers(net), []);
        assert.deepEqual(await leftovers(to), ["bridge", "nft table", "dnsmasq"]);
        assert.equal((await d.ok("network", "get", to, "ipv4.address")).trim(), cidr);
        assert.match((await sh("ip", "-4", "addr", "show", "dev", to)).stdout, new RegExp(cidr));
        await d.ok("network", "delete", to);
        assert.deepEqual(await leftovers(to), []);
      } finally {
        await d.cli("delete", name, "--force");
        await scrub(to);
      }
    }),
});

Deno.test("bad network requests are refused with a clear error and make nothing", async () => {
  const d = await TestDaemon.start();
  const net = bridgeName();
  try {
    const bad: [string[], RegExp][] = [
      [["network", "create", "Bad_Name"], /Invalid network name/],
      [["network", "create", "a".repeat(16)], /Invalid network name/],
      [["network", "create", "lo"], /already has an interface named "lo"/],
      [["network", "create", net, "ipv4.address=10.0.0.0/24"], /ipv4\.address/],
      [["network", "create", net, "ipv4.address=300.1.1.1/24"], /ipv4\.address/],
      [["network", "create", net, "ipv6.address=fd00::1/48"], /ipv6\.address.*\/64/],
      [["network", "create", net, "dns.domain=a b"], /dns\.domain/],
      [["network", "create", net, "bogus.key=1"], /Unknown network config key "bogus\.key"/],
      [["network", "create", net, "--type", "macvlan"], /not supported/],
      [["network", "show", "nope"], /Network "nope" not found/],
      [
        ["profile", "device", "add", "default", "eth9", "nic", "network=nope"],
        /network "nope" does not exist/,
      ],
    ];
    for (const [args, why] of bad) {
      const r = await d.cli(...args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, why, args.join(" "));
      assert.equal(r.stderr.split("\n").filter((l) => l).length, 1, r.stderr);
    }
    assert.deepEqual(await d.api.get<string[]>("/1.0/networks"), []);
    assert.deepEqual(await leftovers(net), []);
  } finally {
    await d.cleanup();
    await scrub(net);
  }
});

Deno.test({
  name: "the first start makes outpostbr0 and an eth0 on it in the default profile: a container " +
    "launched with no options gets an address (in a namespace of its own)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const ns = `op-dn-${crypto.randomUUID().slice(0, 6)}`;
    assert.equal((await sh("ip", "netns", "add", ns)).code, 0);
    const d = await TestDaemon.start(undefined, { netns: ns, network: true });
    const name = uniqueName("dn");
    try {
      await d.importBusybox("bb");
      const nets = await d.api.get<{ name: string; config: Record<string, string> }[]>(
        "/1.0/networks?recursion=1",
      );
      assert.deepEqual(nets.map((n) => n.name), ["outpostbr0"]);
      assert.match(nets[0].config["ipv4.address"], /^10\.\d+\.\d+\.1\/24$/);
      const prof = await d.api.get<{ devices: Record<string, Record<string, string>> }>(
        "/1.0/profiles/default",
      );
      assert.deepEqual(prof.devices.eth0, { type: "nic", network: "outpostbr0", name: "eth0" });
      await d.ok("launch", "bb", name);
      const prefix = nets[0].config["ipv4.address"].split(".").slice(0, 3).join(".");
      await waitUntil(
        "a lease on outpostbr0",
        async () => (await ipv4Of(d, name))?.startsWith(`${prefix}.`) ?? false,
      );
      // A restart is not a first start: nothing is made twice.
      await d.stop();
      await d.spawn();
      assert.deepEqual(await d.api.get<string[]>("/1.0/networks"), ["/1.0/networks/outpostbr0"]);
    } finally {
      await d.cli("delete", name, "--force");
      await d.cleanup();
      await sh("pkill", "-f", `${d.dir}/networks/`);
      await sh("ip", "netns", "del", ns);
    }
  },
});

Deno.test({
  name:
    "a VM on a managed bridge gets an address by DHCP on a tap, and a container reaches it by name",
  ignore: !HAS_QEMU,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNetwork(async (d, net) => {
      const [vm, c1] = [uniqueName("nv"), uniqueName("nc")];
      await d.importVmImage("vm");
      await d.ok("network", "create", net, "ipv4.nat=false");
      const p = await nicProfile(d, net);
      await d.ok("launch", "vm", vm, "--vm", "-p", "default", "-p", p);
      await d.ok("launch", "bb", c1, "-p", "default", "-p", p);
      // The tap QEMU made is on the bridge, named as the volatile key says.
      const cfg = await d.api.get<{ config: Record<string, string> }>(`/1.0/instances/${vm}`);
      const tap = cfg.config["volatile.eth0.host_name"];
      assert.match(tap, /^tap[0-9a-f]{8}$/);
      assert.match(
        (await sh("ip", "link", "show", "dev", tap)).stdout,
        new RegExp(`master ${net}`),
      );
      let address: string | undefined;
      await waitUntil(
        "the VM's lease",
        async () => (address = await ipv4Of(d, vm)) !== undefined,
        90_000,
      );
      const ping = await d.cli("exec", c1, "--", "ping", "-c", "1", "-W", "5", vm);
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      assert.match(ping.stdout, new RegExp(address!.replaceAll(".", "\\.")));
      // The tap goes with QEMU.
      await d.ok("stop", vm, "--force");
      assert.notEqual((await sh("ip", "link", "show", "dev", tap)).code, 0);
      await d.ok("delete", vm, c1, "--force");
      await d.ok("profile", "delete", p);
      await d.ok("network", "delete", net);
      assert.deepEqual(await leftovers(net), []);
    }),
});
