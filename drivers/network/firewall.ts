/**
 * The NAT rules of a managed bridge, through nftables (a table of its own per family, see
 * `nft.ts`) or, where nftables is missing, through iptables and ip6tables (rules in the `nat`
 * table's POSTROUTING chain, each tagged with a comment naming the bridge, so that exactly its
 * rules are replaced or removed).
 */
import { formatIpv4, type Ipv4Cidr, networkOf } from "./ipv4.ts";
import { type Ipv6Cidr, subnet6 } from "./ipv6.ts";
import { deleteScript, nat6Script, natScript, tableName } from "./nft.ts";
import type { Runner } from "../runner.ts";

export interface NatRules {
  bridge: string;
  ipv4?: Ipv4Cidr;
  nat4: boolean;
  ipv6?: Ipv6Cidr;
  nat6: boolean;
}

export interface Firewall {
  readonly name: "nftables" | "iptables";
  /** Makes the bridge's rules what `r` says (idempotent). */
  apply(r: NatRules): Promise<void>;
  /** Removes every rule of the bridge (whether or not there are any). */
  remove(bridge: string): Promise<void>;
}

export class NftFirewall implements Firewall {
  readonly name = "nftables";
  constructor(private runner: Runner) {}

  async apply(r: NatRules): Promise<void> {
    await this.runner.run(["nft", "-f", "-"], { stdin: natScript(r.bridge, r.ipv4, r.nat4) });
    await this.runner.run(["nft", "-f", "-"], { stdin: nat6Script(r.bridge, r.ipv6, r.nat6) });
  }

  async remove(bridge: string): Promise<void> {
    await this.runner.run(["nft", "-f", "-"], { stdin: deleteScript(bridge), allowFailure: true });
  }
}

/** The comment that marks a bridge's rules (the nftables table's name: `outpost_NAME`). */
const tag = (bridge: string) => tableName(bridge);

/** The masquerade rule of one family, as iptables arguments after `-A POSTROUTING`. */
export function masqueradeRule(bridge: string, subnet: string): string[] {
  return [
    "-s",
    subnet,
    "!",
    "-d",
    subnet,
    "!",
    "-o",
    bridge,
    "-m",
    "comment",
    "--comment",
    tag(bridge),
    "-j",
    "MASQUERADE",
  ];
}

/** The bridge's rules among `iptables -t nat -S POSTROUTING` lines, as `-D` arguments. */
export function taggedRules(listing: string, bridge: string): string[][] {
  const out: string[][] = [];
  for (const line of listing.split("\n")) {
    const args = line.trim().split(/\s+/);
    if (args[0] !== "-A" || args[1] !== "POSTROUTING") continue;
    const c = args.indexOf("--comment");
    if (c < 0 || args[c + 1]?.replaceAll('"', "") !== tag(bridge)) continue;
    out.push(["-D", ...args.slice(1).map((a) => a.replaceAll('"', ""))]);
  }
  return out;
}

export class IptablesFirewall implements Firewall {
  readonly name = "iptables";
  constructor(private runner: Runner) {}

  async apply(r: NatRules): Promise<void> {
    await this.remove(r.bridge);
    if (r.ipv4 && r.nat4) {
      const subnet = `${formatIpv4(networkOf(r.ipv4))}/${r.ipv4.prefix}`;
      await this.runner.run([
        "iptables",
        "-w",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        ...masqueradeRule(r.bridge, subnet),
      ]);
    }
    if (r.ipv6 && r.nat6) {
      await this.runner.run([
        "ip6tables",
        "-w",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        ...masqueradeRule(r.bridge, subnet6(r.ipv6)),
      ]);
    }
  }

  async remove(bridge: string): Promise<void> {
    for (const tool of ["iptables", "ip6tables"]) {
      const listing = await this.runner.run([tool, "-w", "-t", "nat", "-S", "POSTROUTING"], {
        allowFailure: true,
      });
      if (listing.code !== 0) continue;
      for (const rule of taggedRules(listing.stdout, bridge)) {
        await this.runner.run([tool, "-w", "-t", "nat", ...rule], { allowFailure: true });
      }
    }
  }
}

/**
 * The firewall to use: `want` if given (`nftables` or `iptables`), else nftables when `nft`
 * runs, else iptables.
 */
export async function pickFirewall(runner: Runner, want?: string): Promise<Firewall> {
  if (want === "iptables") return new IptablesFirewall(runner);
  if (want === "nftables") return new NftFirewall(runner);
  const nft = await runner.run(["nft", "--version"], { allowFailure: true }).catch(() => undefined);
  return nft?.code === 0 ? new NftFirewall(runner) : new IptablesFirewall(runner);
}
