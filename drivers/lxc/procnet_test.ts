import assert from "node:assert/strict";
import { parseIpAddr } from "./network.ts";
import { netDevCounters, parseProcNet } from "./procnet.ts";

/** Runs a script in a fresh network namespace; returns its stdout split at "@@\n" markers. */
async function inNewNetns(script: string): Promise<string[]> {
  const out = await new Deno.Command("unshare", { args: ["-n", "sh", "-c", script] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split("@@\n");
}

const READ = "cat /proc/self/net/dev; echo @@; cat /proc/self/net/if_inet6; echo @@; " +
  "cat /proc/self/net/fib_trie; echo @@; cat /proc/self/net/route; echo @@; ip -j -s addr show";

Deno.test("the kernel's files give what `ip` says of a namespace with only the loopback", async () => {
  const [dev, inet6, trie, route, ip] = await inNewNetns(
    `ip link set lo up; ping -c1 -W1 127.0.0.1 >/dev/null 2>&1; ${READ}`,
  );
  const fromProc = parseProcNet([dev, inet6, trie, route]);
  const fromIp = parseIpAddr(ip);
  assert.deepEqual(fromProc, fromIp);
  assert.ok(fromProc!.lo.addresses.some((a) => a.address === "127.0.0.1"));
});

Deno.test("a namespace with an interface besides the loopback is left to `ip`", async () => {
  const [dev, inet6, trie, route] = await inNewNetns(
    `ip link add v0 type veth peer name v1 && ip addr add 10.9.8.7/24 dev v0 && ip link set v0 up; ${READ}`,
  );
  assert.equal(parseProcNet([dev, inet6, trie, route]), undefined);
});

Deno.test("a stopped namespace (no files) has no interfaces", () => {
  assert.deepEqual(parseProcNet([undefined, undefined, undefined, undefined]), {});
});

Deno.test("netDevCounters() takes each interface's receive and transmit bytes, packets, errors, drops", () => {
  const text = `\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      10    1    2    0     0          0         0     5678      20    3    4    0     0       0          0
  eth0: 99 1 0 0 0 0 0 0 88 2 0 0 0 0 0 0
`;
  const counters = netDevCounters(text);
  assert.deepEqual([...counters.keys()], ["lo", "eth0"]);
  assert.deepEqual(counters.get("lo"), {
    bytes_received: 1234,
    packets_received: 10,
    errors_received: 1,
    packets_dropped_inbound: 2,
    bytes_sent: 5678,
    packets_sent: 20,
    errors_sent: 3,
    packets_dropped_outbound: 4,
  });
  assert.equal(counters.get("eth0")?.bytes_sent, 88);
});
