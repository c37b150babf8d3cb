/**
 * IPv6 addresses of a managed bridge (pure): a /64 with the bridge's own address in it, as
 * `fd12:3456:789a:1::1/64`. Instances configure themselves from the router advertisements dnsmasq
 * sends (SLAAC), so only /64 prefixes are taken.
 */

export interface Ipv6Cidr {
  /** The address, 128 bits. */
  address: bigint;
  prefix: 64;
}

const MASK_64 = (1n << 64n) - 1n;

/** Parses an IPv6 address (`::` shortening allowed, no zone, no embedded IPv4). */
export function parseIpv6(text: string): bigint | undefined {
  if (typeof text !== "string" || text.length > 39 || !/^[0-9a-fA-F:]+$/.test(text)) {
    return undefined;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let n = 0n;
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

/** The shortest form (RFC 5952: lower case, the longest run of zero groups as `::`). */
export function formatIpv6(n: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best.at < 0) return hex.join(":");
  const left = hex.slice(0, best.at).join(":");
  const right = hex.slice(best.at + best.len).join(":");
  return `${left}::${right}`;
}

/** `ADDRESS/64` with a host address (not the prefix itself); undefined otherwise. */
export function parseCidr6(text: string): Ipv6Cidr | undefined {
  const m = /^([0-9a-fA-F:]+)\/64$/.exec(typeof text === "string" ? text : "");
  if (!m) return undefined;
  const address = parseIpv6(m[1]);
  if (address === undefined || (address & MASK_64) === 0n) return undefined;
  return { address, prefix: 64 };
}

export function formatCidr6(c: Ipv6Cidr): string {
  return `${formatIpv6(c.address)}/64`;
}

/** The /64 prefix (`fd12:3456:789a:1::/64`). */
export function subnet6(c: Ipv6Cidr): string {
  return `${formatIpv6(c.address & ~MASK_64)}/64`;
}

/** A random unique local /64 (`fdXX:XXXX:XXXX:XXXX::1/64`, RFC 4193) from 7 random bytes. */
export function randomUla(random: Uint8Array): Ipv6Cidr {
  let n = 0xfdn;
  for (const b of random.subarray(0, 7)) n = (n << 8n) | BigInt(b);
  return { address: (n << 64n) | 1n, prefix: 64 };
}
