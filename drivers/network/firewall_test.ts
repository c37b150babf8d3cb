import assert from "node:assert/strict";
import { masqueradeRule, taggedRules } from "./firewall.ts";

Deno.test("the iptables rules of a bridge carry its tag, and only they are picked for deletion", () => {
  assert.deepEqual(masqueradeRule("br-0", "10.9.8.0/24"), [
    "-s",
    "10.9.8.0/24",
    "!",
    "-d",
    "10.9.8.0/24",
    "!",
    "-o",
    "br-0",
    "-m",
    "comment",
    "--comment",
    "outpost_br_0",
    "-j",
    "MASQUERADE",
  ]);
  const listing = [
    "-P POSTROUTING ACCEPT",
    '-A POSTROUTING -s 10.9.8.0/24 ! -d 10.9.8.0/24 ! -o br-0 -m comment --comment "outpost_br_0" -j MASQUERADE',
    "-A POSTROUTING -s 10.9.7.0/24 ! -o br1 -m comment --comment outpost_br1 -j MASQUERADE",
    "-A POSTROUTING -s 10.9.8.0/24 -m comment --comment outpost_br_00 -j MASQUERADE",
    "-A POSTROUTING -o eth0 -j MASQUERADE",
  ].join("\n");
  assert.deepEqual(taggedRules(listing, "br-0"), [[
    "-D",
    "POSTROUTING",
    ...masqueradeRule("br-0", "10.9.8.0/24"),
  ]]);
  assert.equal(taggedRules(listing, "br1").length, 1);
  assert.deepEqual(taggedRules(listing, "br2"), []);
});
