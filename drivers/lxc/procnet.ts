/**
 * A container's network state from the kernel's per-namespace files (`/proc/PID/net/dev`,
 * `if_inet6`, `fib_trie`, `route`), read without entering the namespace and without a process.
 * They carry names, counters and addresses but not MTU, MAC address or link state: those are
 * known only for the loopback; for any other interface the caller asks `ip` instead.
 */
import type { NetworkAddress, NetworkState } from "../../contract/instance_state.ts";

/** The files to read for `pid`, in the order `parseProcNet` takes them. */
export function procNetFiles(pid: number): string[] {
  return ["dev", "if_inet6", "fib_trie", "route"].map((f) => `/proc/${pid}/net/${f}`);
}

/** Interface counters from `/proc/net/dev`. */
export function parseNetDev(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const line of text.split("\n").slice(2)) {
    const at = line.indexOf(":");
    if (at < 0) continue;
    out.set(line.slice(0, at).trim(), line.slice(at + 1).trim().split(/\s+/).map(Number));
  }
  return out;
}

/** The counters of each interface from `/proc/net/dev`, named as the instance state names them. */
export function netDevCounters(text: string): Map<string, NetworkState["counters"]> {
  const out = new Map<string, NetworkState["counters"]>();
  for (const [name, c] of parseNetDev(text)) {
    out.set(name, {
      bytes_received: c[0] ?? 0,
      packets_received: c[1] ?? 0,
      errors_received: c[2] ?? 0,
      packets_dropped_inbound: c[3] ?? 0,
      bytes_sent: c[8] ?? 0,
      packets_sent: c[9] ?? 0,
      errors_sent: c[10] ?? 0,
      packets_dropped_outbound: c[11] ?? 0,
    });
  }
  return out;
}

const SCOPES: Record<string, string> = { "00": "global", "20": "link", "10": "local" };

/** IPv6 addresses by interface from `/proc/net/if_inet6`. */
export function parseIfInet6(text: string): Map<string, NetworkAddress[]> {
  const out = new Map<string, NetworkAddress[]>();
  for (const line of text.split("\n")) {
    const [hex, , prefix, scope, , ifname] = line.trim().split(/\s+/);
    if (!ifname || !/^[0-9a-f]{32}$/.test(hex)) continue;
    const groups = hex.match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, ""));
    const list = out.get(ifname) ?? [];
    list.push({
      family: "inet6",
      address: compressV6(groups),
      netmask: String(parseInt(prefix, 16)),
      scope: SCOPES[scope] ?? "global",
    });
    out.set(ifname, list);
  }
  return out;
}

/** The usual text form: the longest run of zero groups as "::". */
function compressV6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

/** The local IPv4 addresses (`/32 host LOCAL` leaves of the local table) from `fib_trie`. */
export function parseFibTrieLocal(text: string): string[] {
  const out = new Set<string>();
  const lines = text.split("\n");
  for (let i = 1; i < lines.length; i++) {
    if (!/^\s+\/32 host LOCAL/.test(lines[i])) continue;
    const leaf = /\|--\s+(\d+\.\d+\.\d+\.\d+)/.exec(lines[i - 1]);
    if (leaf) out.add(leaf[1]);
  }
  return [...out];
}

function ipv4(hexLittleEndian: string): number {
  const n = parseInt(hexLittleEndian, 16);
  // /proc/net/route prints addresses as host-order (little-endian) hex words.
  return (((n & 0xff) << 24) | ((n >>> 8 & 0xff) << 16) | ((n >>> 16 & 0xff) << 8) | (n >>> 24)) >>>
    0;
}

function parseV4(a: string): number {
  return a.split(".").reduce((n, p) => (n * 256) + Number(p), 0) >>> 0;
}

/** Which interface a local IPv4 address sits on, and its prefix, from `/proc/net/route`. */
function placeV4(address: string, route: string): { ifname: string; prefix: number } | undefined {
  if (address.startsWith("127.")) return { ifname: "lo", prefix: 8 };
  const a = parseV4(address);
  let best: { ifname: string; prefix: number } | undefined;
  for (const line of route.split("\n").slice(1)) {
    const [ifname, dest, gateway, , , , , mask] = line.trim().split(/\s+/);
    if (!mask || gateway !== "00000000") continue;
    const m = ipv4(mask);
    if (((a & m) >>> 0) !== ipv4(dest)) continue;
    const prefix = m.toString(2).replace(/0/g, "").length;
    if (!best || prefix > best.prefix) best = { ifname, prefix };
  }
  return best;
}

/**
 * The state of each interface, or `undefined` when the namespace has an interface besides the
 * loopback (its MTU, MAC address and link state are not in these files).
 */
export function parseProcNet(
  [dev, inet6, fibTrie, route]: (string | undefined)[],
): Record<string, NetworkState> | undefined {
  if (dev === undefined) return {};
  const byName = netDevCounters(dev);
  if ([...byName.keys()].some((name) => name !== "lo")) return undefined;
  const v6 = parseIfInet6(inet6 ?? "");
  const out: Record<string, NetworkState> = {};
  for (const [name, counters] of byName) {
    const addresses: NetworkAddress[] = [];
    for (const address of parseFibTrieLocal(fibTrie ?? "")) {
      const place = placeV4(address, route ?? "");
      if (place?.ifname === name) {
        addresses.push({ family: "inet", address, netmask: String(place.prefix), scope: "local" });
      }
    }
    addresses.push(...(v6.get(name) ?? []).map((a) => ({ ...a, scope: "local" })));
    out[name] = {
      addresses,
      counters,
      hwaddr: "",
      host_name: "",
      mtu: 65536,
      // A down loopback has no addresses: the kernel removes them with the link.
      state: addresses.length > 0 ? "up" : "down",
      type: "loopback",
    };
  }
  return out;
}
