/**
 * The nftables rules of one managed bridge, in tables of its own (`ip outpost_NAME`, and
 * `ip6 outpost_NAME` for IPv6), so that deleting the network deletes exactly its rules (pure: the
 * scripts for `nft -f -`).
 */
import { formatIpv4, type Ipv4Cidr, networkOf } from "./ipv4.ts";
import { type Ipv6Cidr, subnet6 } from "./ipv6.ts";

/** Bridge names are `[a-z][a-z0-9-]*`: with `-` as `_` they are table names, one to one. */
export function tableName(bridge: string): string {
  if (!/^[a-z][a-z0-9-]{0,14}$/.test(bridge)) throw new Error(`Invalid bridge name "${bridge}"`);
  return `outpost_${bridge.replaceAll("-", "_")}`;
}

/**
 * Replaces the bridge's table in one transaction: made (so the delete cannot fail), deleted, and
 * made again with masquerading of the subnet's traffic leaving by any other interface.
 */
export function natScript(bridge: string, ipv4: Ipv4Cidr | undefined, nat: boolean): string {
  const t = tableName(bridge);
  const lines = [`table ip ${t}`, `delete table ip ${t}`, `table ip ${t} {`];
  if (ipv4 && nat) {
    const subnet = `${formatIpv4(networkOf(ipv4))}/${ipv4.prefix}`;
    lines.push(
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      `    ip saddr ${subnet} ip daddr != ${subnet} oifname != "${bridge}" masquerade`,
      "  }",
    );
  }
  lines.push("}");
  return `${lines.join("\n")}\n`;
}

/**
 * The IPv6 table: masquerading of the /64's traffic leaving by any other interface (no table when
 * the network has no IPv6 NAT).
 */
export function nat6Script(bridge: string, ipv6: Ipv6Cidr | undefined, nat: boolean): string {
  const t = tableName(bridge);
  const lines = [`table ip6 ${t}`, `delete table ip6 ${t}`];
  // Without IPv6 NAT the table is not there at all.
  if (!ipv6 || !nat) return `${lines.join("\n")}\n`;
  const subnet = subnet6(ipv6);
  lines.push(
    `table ip6 ${t} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip6 saddr ${subnet} ip6 daddr != ${subnet} oifname != "${bridge}" masquerade`,
    "  }",
    "}",
  );
  return `${lines.join("\n")}\n`;
}

/** Deletes the bridge's tables (made first, so a missing one is no error). */
export function deleteScript(bridge: string): string {
  const t = tableName(bridge);
  return `table ip ${t}\ndelete table ip ${t}\ntable ip6 ${t}\ndelete table ip6 ${t}\n`;
}
