import assert from "node:assert/strict";
import { parseCidr } from "./ipv4.ts";
import { parseCidr6 } from "./ipv6.ts";
import { deleteScript, nat6Script, natScript, tableName } from "./nft.ts";

Deno.test("natScript() replaces the bridge's own table in one transaction, masquerading its subnet", () => {
  const script = natScript("br-0", parseCidr("10.9.8.1/24")!, true);
  assert.equal(
    script,
    [
      "table ip outpost_br_0",
      "delete table ip outpost_br_0",
      "table ip outpost_br_0 {",
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      '    ip saddr 10.9.8.0/24 ip daddr != 10.9.8.0/24 oifname != "br-0" masquerade',
      "  }",
      "}",
      "",
    ].join("\n"),
  );
  assert.doesNotMatch(natScript("br0", parseCidr("10.9.8.1/24")!, false), /masquerade/);
  assert.equal(
    deleteScript("br0"),
    "table ip outpost_br0\ndelete table ip outpost_br0\ntable ip6 outpost_br0\ndelete table ip6 outpost_br0\n",
  );
});

Deno.test("nat6Script() masquerades the bridge's /64 in an ip6 table of its own", () => {
  const script = nat6Script("br0", parseCidr6("fd42:1:2:3::1/64")!, true);
  assert.match(script, /^table ip6 outpost_br0\ndelete table ip6 outpost_br0\n/);
  assert.match(
    script,
    /ip6 saddr fd42:1:2:3::\/64 ip6 daddr != fd42:1:2:3::\/64 oifname != "br0" masquerade/,
  );
  // No IPv6 NAT: no table left at all.
  const none = "table ip6 outpost_br0\ndelete table ip6 outpost_br0\n";
  assert.equal(nat6Script("br0", parseCidr6("fd42:1:2:3::1/64")!, false), none);
  assert.equal(nat6Script("br0", undefined, true), none);
});

Deno.test("tableName() refuses a name that could not be a table name", () => {
  for (const bad of ["Br0", "br 0", "br0;", 'br"0', "", "0br", "a".repeat(16)]) {
    assert.throws(() => tableName(bad), /Invalid bridge name/, bad);
  }
});
