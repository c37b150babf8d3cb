import assert from "node:assert/strict";
import { formatCidr6, formatIpv6, parseCidr6, parseIpv6, randomUla, subnet6 } from "./ipv6.ts";

Deno.test("parseIpv6() and formatIpv6() round-trip in RFC 5952's shortest form", () => {
  for (
    const [text, shortest] of [
      ["fd42:0:0:1::1", "fd42:0:0:1::1"],
      ["FD42:0000:0000:0001:0000:0000:0000:0001", "fd42:0:0:1::1"],
      ["::", "::"],
      ["::1", "::1"],
      ["2001:db8::", "2001:db8::"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ]
  ) {
    const n = parseIpv6(text);
    assert.notEqual(n, undefined, text);
    assert.equal(formatIpv6(n!), shortest, text);
  }
  for (
    const bad of ["", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "g::1", "::ffff:1.2.3.4"]
  ) {
    assert.equal(parseIpv6(bad), undefined, bad);
  }
});

Deno.test("parseCidr6() takes a host address in a /64 only", () => {
  const c = parseCidr6("fd42:1:2:3::1/64")!;
  assert.equal(formatCidr6(c), "fd42:1:2:3::1/64");
  assert.equal(subnet6(c), "fd42:1:2:3::/64");
  for (const bad of ["fd42:1:2:3::/64", "fd42::1/48", "fd42::1", "fd42::1/64 ", "x/64"]) {
    assert.equal(parseCidr6(bad), undefined, bad);
  }
});

Deno.test("randomUla() makes an fd00::/8 /64 with the bridge at ::1", () => {
  const c = randomUla(new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
  assert.equal(formatCidr6(c), "fd01:203:405:607::1/64");
});
