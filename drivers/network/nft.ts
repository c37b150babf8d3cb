/**
 * The nftables rules of one managed bridge, in a table of its own (`ip outpost_NAME`), so that
 * deleting the network deletes exactly its rules (pure: the script for `nft -f -`).
 */
import { formatIpv4, type Ipv4Cidr, networkOf } from "./ipv4.ts";

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

/** Deletes the bridge's table (made first, so a missing one is no error). */
export function deleteScript(bridge: string): string {
  const t = tableName(bridge);
  return `table ip ${t}\ndelete table ip ${t}\n`;
}
