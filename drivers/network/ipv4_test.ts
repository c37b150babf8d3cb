import assert from "node:assert/strict";
import {
  chooseSubnet,
  dhcpRange,
  formatCidr,
  formatIpv4,
  isHostAddress,
  overlaps,
  parseCidr,
  parseIpv4,
  parseSubnet,
} from "./ipv4.ts";

Deno.test("parseIpv4() takes dotted quads only, without leading zeros", () => {
  assert.equal(parseIpv4("10.1.2.3"), (10 << 24 >>> 0) + (1 << 16) + (2 << 8) + 3);
  assert.equal(formatIpv4(parseIpv4("255.255.255.255")!), "255.255.255.255");
  for (const bad of ["10.1.2", "10.1.2.256", "01.1.1.1", "a.b.c.d", "1.1.1.1 ", "", "1..1.1"]) {
    assert.equal(parseIpv4(bad), undefined, bad);
  }
});

Deno.test("parseCidr() takes an address with a prefix from 8 to 30", () => {
  assert.equal(formatCidr(parseCidr("10.1.2.1/24")!), "10.1.2.1/24");
  for (const bad of ["10.1.2.1", "10.1.2.1/31", "10.1.2.1/7", "10.1.2.1/x", "10.1.2.1/024"]) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
  assert.deepEqual(parseSubnet("192.168.1.7"), { address: parseIpv4("192.168.1.7"), prefix: 32 });
  assert.equal(parseSubnet("0.0.0.0/0")?.prefix, 0);
});

Deno.test("host addresses, overlaps and the DHCP range of a subnet", () => {
  const c = parseCidr("10.1.2.1/24")!;
  assert.ok(isHostAddress(c, parseIpv4("10.1.2.50")!));
  assert.ok(!isHostAddress(c, parseIpv4("10.1.2.0")!));
  assert.ok(!isHostAddress(c, parseIpv4("10.1.2.255")!));
  assert.ok(!isHostAddress(c, parseIpv4("10.1.3.5")!));
  assert.ok(overlaps(c, parseSubnet("10.0.0.0/8")!));
  assert.ok(overlaps(c, parseSubnet("10.1.2.77")!));
  assert.ok(!overlaps(c, parseSubnet("10.1.3.0/24")!));
  assert.deepEqual(dhcpRange(c), { start: "10.1.2.2", end: "10.1.2.254" });
});

Deno.test("chooseSubnet() picks a 10.x.y.1/24 clear of every taken subnet, or none", () => {
  const taken = [parseSubnet("10.0.0.0/9")!, parseSubnet("10.200.0.0/16")!];
  for (let seed = 0; seed < 50; seed++) {
    const c = chooseSubnet(taken, seed * 977)!;
    assert.match(formatCidr(c), /^10\.\d+\.\d+\.1\/24$/);
    assert.ok(!taken.some((t) => overlaps(t, c)), formatCidr(c));
  }
  assert.equal(chooseSubnet([parseSubnet("10.0.0.0/8")!], 1), undefined);
});
