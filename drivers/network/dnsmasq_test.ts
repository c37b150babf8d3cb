import assert from "node:assert/strict";
import { dnsmasqArgv, hostEntry, parseLeases } from "./dnsmasq.ts";
import { parseCidr } from "./ipv4.ts";
import { parseCidr6 } from "./ipv6.ts";

Deno.test("dnsmasqArgv() serves DHCP and DNS on the bridge only, reading no host config", () => {
  const argv = dnsmasqArgv({
    bridge: "br0",
    dir: "/s/networks/br0",
    ipv4: parseCidr("10.9.8.1/24")!,
    dhcp: true,
    domain: "lan",
  });
  assert.equal(argv[0], "dnsmasq");
  for (
    const a of [
      "--conf-file=/dev/null",
      "--no-hosts",
      "--bind-interfaces",
      "--interface=br0",
      "--listen-address=10.9.8.1",
      "--pid-file=/s/networks/br0/dnsmasq.pid",
      "--domain=lan",
      "--local=/lan/",
      "--dhcp-range=10.9.8.2,10.9.8.254,1h",
      "--dhcp-hostsdir=/s/networks/br0/dhcp-hosts",
      "--dhcp-ignore-names",
    ]
  ) assert.ok(argv.includes(a), a);
  const noDhcp = dnsmasqArgv({
    bridge: "br0",
    dir: "/d",
    ipv4: parseCidr("10.9.8.1/24")!,
    dhcp: false,
    domain: "lan",
  });
  assert.ok(!noDhcp.some((a) => a.startsWith("--dhcp")));
});

Deno.test("dnsmasqArgv() with IPv6 sends router advertisements for the bridge's /64", () => {
  const both = dnsmasqArgv({
    bridge: "br0",
    dir: "/d",
    ipv4: parseCidr("10.9.8.1/24")!,
    ipv6: parseCidr6("fd42:1:2:3::1/64")!,
    dhcp: true,
    domain: "lan",
  });
  for (
    const a of [
      "--listen-address=10.9.8.1",
      "--listen-address=fd42:1:2:3::1",
      "--enable-ra",
      "--dhcp-range=::,constructor:br0,ra-stateless,ra-names",
      "--dhcp-range=10.9.8.2,10.9.8.254,1h",
    ]
  ) assert.ok(both.includes(a), a);
  const v6only = dnsmasqArgv({
    bridge: "br0",
    dir: "/d",
    ipv6: parseCidr6("fd42:1:2:3::1/64")!,
    dhcp: true,
    domain: "lan",
  });
  assert.ok(v6only.includes("--enable-ra"));
  assert.ok(!v6only.some((a) => a.startsWith("--dhcp-range=10.") || a.includes("10.9.8.1")));
});

Deno.test("hostEntry() and parseLeases() read and write dnsmasq's formats", () => {
  assert.equal(hostEntry("10:66:6a:00:00:01", "c1"), "10:66:6a:00:00:01,c1\n");
  assert.equal(
    hostEntry("10:66:6a:00:00:01", "c1", "10.9.8.50"),
    "10:66:6a:00:00:01,10.9.8.50,c1\n",
  );
  assert.deepEqual(
    parseLeases(
      "1700000000 10:66:6a:00:00:01 10.9.8.20 c1 01:10:66:6a:00:00:01\n" +
        "0 10:66:6a:00:00:02 10.9.8.21 * *\ngarbage line\n\n",
    ),
    [
      { expiry: 1700000000, hwaddr: "10:66:6a:00:00:01", address: "10.9.8.20", hostname: "c1" },
      { expiry: 0, hwaddr: "10:66:6a:00:00:02", address: "10.9.8.21", hostname: "" },
    ],
  );
});
