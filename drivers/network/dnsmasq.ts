/**
 * dnsmasq for one managed bridge: DHCP and DNS for its instances (pure: the argv, the host entries
 * and the leases file). One dnsmasq per bridge, reading nothing of the host's own configuration.
 */
import { dhcpRange, formatIpv4, type Ipv4Cidr } from "./ipv4.ts";
import { formatIpv6, type Ipv6Cidr } from "./ipv6.ts";

export interface DnsmasqSpec {
  bridge: string;
  /** The network's state directory: pid file, leases, per-instance host entries. */
  dir: string;
  ipv4?: Ipv4Cidr;
  /** With IPv6: router advertisements for SLAAC, stateless DHCPv6 for DNS. */
  ipv6?: Ipv6Cidr;
  dhcp: boolean;
  domain: string;
}

export const PID_FILE = "dnsmasq.pid";
export const LEASES_FILE = "dnsmasq.leases";
/** One file per instance (`dhcp-hostsdir`, re-read by dnsmasq when it changes). */
export const HOSTS_DIR = "dhcp-hosts";

export function dnsmasqArgv(s: DnsmasqSpec): string[] {
  const argv = [
    "dnsmasq",
    "--conf-file=/dev/null",
    "--no-hosts",
    "--no-ping",
    "--strict-order",
    "--bind-interfaces",
    "--except-interface=lo",
    `--interface=${s.bridge}`,
    ...(s.ipv4 ? [`--listen-address=${formatIpv4(s.ipv4.address)}`] : []),
    ...(s.ipv6 ? [`--listen-address=${formatIpv6(s.ipv6.address)}`] : []),
    `--pid-file=${s.dir}/${PID_FILE}`,
    `--domain=${s.domain}`,
    `--local=/${s.domain}/`,
  ];
  if (s.ipv6) {
    // SLAAC from dnsmasq's router advertisements; DNS by stateless DHCPv6; names of DHCPv4
    // clients also under their SLAAC addresses.
    argv.push(
      "--enable-ra",
      `--dhcp-range=::,constructor:${s.bridge},ra-stateless,ra-names`,
    );
  }
  if (s.dhcp && s.ipv4) {
    const { start, end } = dhcpRange(s.ipv4);
    argv.push(
      `--dhcp-range=${start},${end},1h`,
      "--dhcp-no-override",
      "--dhcp-authoritative",
      "--dhcp-rapid-commit",
      // Names come only from the host entries the daemon writes (MAC → instance name): a name a
      // client asks for is ignored, so no instance can claim another's name in DNS.
      "--dhcp-ignore-names",
      `--dhcp-leasefile=${s.dir}/${LEASES_FILE}`,
      `--dhcp-hostsdir=${s.dir}/${HOSTS_DIR}`,
    );
  }
  return argv;
}

/** The host entry of one nic: its MAC, its fixed address if any, and the instance's name. */
export function hostEntry(hwaddr: string, name: string, ipv4?: string): string {
  return `${[hwaddr, ipv4, name].filter((v) => v).join(",")}\n`;
}

export interface Lease {
  hwaddr: string;
  address: string;
  hostname: string;
  /** Seconds since the epoch; 0 for an infinite lease. */
  expiry: number;
}

/** Parses dnsmasq's leases file (`EXPIRY MAC IP HOSTNAME CLIENTID` a line). */
export function parseLeases(text: string): Lease[] {
  const out: Lease[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !/^\d+$/.test(f[0])) continue;
    out.push({
      expiry: Number(f[0]),
      hwaddr: f[1],
      address: f[2],
      hostname: f[3] === "*" ? "" : f[3],
    });
  }
  return out;
}
