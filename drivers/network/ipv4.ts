/** IPv4 addresses and subnets as a managed bridge needs them (pure). */

/** An address with its prefix length: the bridge's own address and its subnet (`10.1.2.1/24`). */
export interface Ipv4Cidr {
  /** The address as a 32-bit number. */
  address: number;
  prefix: number;
}

const OCTETS = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** `a.b.c.d` as a number, or undefined. */
export function parseIpv4(text: string): number | undefined {
  const m = OCTETS.exec(text);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p, i) => p > 255 || (m[i + 1].length > 1 && m[i + 1].startsWith("0")))) {
    return undefined;
  }
  return ((parts[0] << 24) >>> 0) + (parts[1] << 16) + (parts[2] << 8) + parts[3];
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** `a.b.c.d/N` (N from 8 to 30: room for a gateway and instances), or undefined. */
export function parseCidr(text: string): Ipv4Cidr | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const address = parseIpv4(text.slice(0, slash));
  const p = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,2}$/.test(p)) return undefined;
  const prefix = Number(p);
  if (prefix < 8 || prefix > 30) return undefined;
  return { address, prefix };
}

/** A route's destination (`10.0.0.0/8`, or an address alone as a /32), for overlap checks. */
export function parseSubnet(text: string): Ipv4Cidr | undefined {
  const [a, p = "32"] = text.split("/");
  const address = parseIpv4(a);
  if (address === undefined || !/^\d{1,2}$/.test(p) || Number(p) > 32) return undefined;
  return { address, prefix: Number(p) };
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function networkOf(c: Ipv4Cidr): number {
  return (c.address & mask(c.prefix)) >>> 0;
}

export function broadcastOf(c: Ipv4Cidr): number {
  return (networkOf(c) | (~mask(c.prefix) >>> 0)) >>> 0;
}

export function contains(c: Ipv4Cidr, address: number): boolean {
  return ((address & mask(c.prefix)) >>> 0) === networkOf(c);
}

/** Whether two subnets share any address. */
export function overlaps(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.address & mask(p)) >>> 0) === ((b.address & mask(p)) >>> 0);
}

/** Whether `address` can be given to a host of the subnet (not its network or broadcast). */
export function isHostAddress(c: Ipv4Cidr, address: number): boolean {
  return contains(c, address) && address !== networkOf(c) && address !== broadcastOf(c);
}

export function formatCidr(c: Ipv4Cidr): string {
  return `${formatIpv4(c.address)}/${c.prefix}`;
}

/** The DHCP range of a subnet: from the second host address to the last, the gateway aside. */
export function dhcpRange(c: Ipv4Cidr): { start: string; end: string } {
  const first = networkOf(c) + 2;
  const last = broadcastOf(c) - 1;
  return { start: formatIpv4(first), end: formatIpv4(last) };
}

/**
 * A /24 in 10.0.0.0/8 that overlaps none of `taken` (the host's routes and addresses, the other
 * networks), its first address the gateway: tried in a pseudo-random order from `seed`.
 */
export function chooseSubnet(taken: Ipv4Cidr[], seed: number): Ipv4Cidr | undefined {
  for (let i = 0; i < 65536; i++) {
    // A full cycle over 16 bits: an odd step modulo a power of two visits every value once.
    const n = (seed + i * 40503) & 0xffff;
    const candidate = { address: ((10 << 24) >>> 0) + (n << 8) + 1, prefix: 24 };
    if (!taken.some((t) => overlaps(t, candidate))) return candidate;
  }
  return undefined;
}
