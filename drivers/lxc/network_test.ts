import assert from "node:assert/strict";
import { parseIpAddr } from "./network.ts";

/** `ip -j -s addr show` inside a container: loopback and a veth-backed eth0. */
const SAMPLE = JSON.stringify([
  {
    ifindex: 1,
    ifname: "lo",
    flags: ["LOOPBACK", "UP", "LOWER_UP"],
    mtu: 65536,
    qdisc: "noqueue",
    operstate: "UNKNOWN",
    group: "default",
    txqlen: 1000,
    link_type: "loopback",
    address: "00:00:00:00:00:00",
    broadcast: "00:00:00:00:00:00",
    addr_info: [
      {
        family: "inet",
        local: "127.0.0.1",
        prefixlen: 8,
        scope: "host",
        label: "lo",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
      {
        family: "inet6",
        local: "::1",
        prefixlen: 128,
        scope: "host",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
    ],
    stats64: {
      rx: { bytes: 1200, packets: 12, errors: 0, dropped: 0, over_errors: 0, multicast: 0 },
      tx: { bytes: 1200, packets: 12, errors: 0, dropped: 0, carrier_errors: 0, collisions: 0 },
    },
  },
  {
    ifindex: 7,
    link_index: 8,
    ifname: "eth0",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    mtu: 1500,
    qdisc: "noqueue",
    operstate: "UP",
    group: "default",
    txqlen: 1000,
    link_type: "ether",
    address: "00:16:3e:12:34:56",
    broadcast: "ff:ff:ff:ff:ff:ff",
    link_netnsid: 0,
    addr_info: [
      {
        family: "inet",
        local: "10.0.3.15",
        prefixlen: 24,
        broadcast: "10.0.3.255",
        scope: "global",
        dynamic: true,
        label: "eth0",
        valid_life_time: 3500,
        preferred_life_time: 3500,
      },
      {
        family: "inet6",
        local: "fe80::216:3eff:fe12:3456",
        prefixlen: 64,
        scope: "link",
        valid_life_time: 4294967295,
        preferred_life_time: 4294967295,
      },
    ],
    stats64: {
      rx: { bytes: 5000, packets: 40, errors: 1, dropped: 2, over_errors: 0, multicast: 0 },
      tx: { bytes: 3000, packets: 30, errors: 3, dropped: 4, carrier_errors: 0, collisions: 0 },
    },
  },
]);

Deno.test("parseIpAddr() reports each interface by name", () => {
  assert.deepEqual(Object.keys(parseIpAddr(SAMPLE)), ["lo", "eth0"]);
});

Deno.test("parseIpAddr() reports loopback as a local-scope, up loopback without hwaddr", () => {
  const lo = parseIpAddr(SAMPLE).lo;
  assert.deepEqual(lo.addresses, [
    { family: "inet", address: "127.0.0.1", netmask: "8", scope: "local" },
    { family: "inet6", address: "::1", netmask: "128", scope: "local" },
  ]);
  assert.equal(lo.type, "loopback");
  assert.equal(lo.state, "up"); // operstate is UNKNOWN, but the UP flag is set
  assert.equal(lo.hwaddr, "");
  assert.equal(lo.mtu, 65536);
});

Deno.test("parseIpAddr() reports eth0's addresses, hwaddr and counters as Incus does", () => {
  assert.deepEqual(parseIpAddr(SAMPLE).eth0, {
    addresses: [
      { family: "inet", address: "10.0.3.15", netmask: "24", scope: "global" },
      { family: "inet6", address: "fe80::216:3eff:fe12:3456", netmask: "64", scope: "link" },
    ],
    counters: {
      bytes_received: 5000,
      bytes_sent: 3000,
      packets_received: 40,
      packets_sent: 30,
      errors_received: 1,
      errors_sent: 3,
      packets_dropped_inbound: 2,
      packets_dropped_outbound: 4,
    },
    hwaddr: "00:16:3e:12:34:56",
    host_name: "",
    mtu: 1500,
    state: "up",
    type: "broadcast",
  });
});

Deno.test("parseIpAddr() reports a down link with no addresses or stats as zeros", () => {
  const net = parseIpAddr(JSON.stringify([
    {
      ifname: "eth1",
      flags: ["BROADCAST", "MULTICAST"],
      mtu: 1500,
      operstate: "DOWN",
      link_type: "ether",
      address: "00:16:3e:00:00:01",
    },
  ]));
  assert.equal(net.eth1.state, "down");
  assert.deepEqual(net.eth1.addresses, []);
  assert.equal(net.eth1.counters.bytes_received, 0);
  assert.equal(net.eth1.counters.packets_dropped_outbound, 0);
});

Deno.test("parseIpAddr() falls back to operstate when there are no flags", () => {
  const net = parseIpAddr(JSON.stringify([
    { ifname: "a", mtu: 1500, operstate: "UP", link_type: "ether" },
    { ifname: "b", mtu: 1500, operstate: "DOWN", link_type: "ether" },
  ]));
  assert.equal(net.a.state, "up");
  assert.equal(net.b.state, "down");
  assert.equal(net.a.hwaddr, "");
});

Deno.test("parseIpAddr() of an empty list is no interfaces", () => {
  assert.deepEqual(parseIpAddr("[]"), {});
});
