/** Network state of a container, read from the host by entering its network namespace. */
import type { NetworkState } from "../../contract/instance_state.ts";
import type { Runner } from "../runner.ts";

interface IpAddrJson {
  ifname: string;
  mtu: number;
  operstate: string;
  flags?: string[];
  link_type: string;
  address?: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
  stats64?: {
    rx: { bytes: number; packets: number; errors: number; dropped: number };
    tx: { bytes: number; packets: number; errors: number; dropped: number };
  };
}

/** Parses `ip -j -s addr` output into Incus's per-interface network state. */
export function parseIpAddr(json: string): Record<string, NetworkState> {
  const out: Record<string, NetworkState> = {};
  for (const link of JSON.parse(json) as IpAddrJson[]) {
    const up = link.flags?.includes("UP") ?? link.operstate === "UP";
    out[link.ifname] = {
      addresses: (link.addr_info ?? [])
        .filter((a) => a.family === "inet" || a.family === "inet6")
        .map((a) => ({
          family: a.family as "inet" | "inet6",
          address: a.local,
          netmask: String(a.prefixlen),
          scope: a.scope === "host" ? "local" : a.scope,
        })),
      counters: {
        bytes_received: link.stats64?.rx.bytes ?? 0,
        bytes_sent: link.stats64?.tx.bytes ?? 0,
        packets_received: link.stats64?.rx.packets ?? 0,
        packets_sent: link.stats64?.tx.packets ?? 0,
        errors_received: link.stats64?.rx.errors ?? 0,
        errors_sent: link.stats64?.tx.errors ?? 0,
        packets_dropped_inbound: link.stats64?.rx.dropped ?? 0,
        packets_dropped_outbound: link.stats64?.tx.dropped ?? 0,
      },
      hwaddr: link.link_type === "loopback" ? "" : link.address ?? "",
      host_name: "",
      mtu: link.mtu,
      state: up ? "up" : "down",
      type: link.link_type === "loopback" ? "loopback" : "broadcast",
    };
  }
  return out;
}

/** The network state inside the namespace of `pid`; empty if it cannot be read. */
export async function readNetwork(
  runner: Runner,
  pid: number,
): Promise<Record<string, NetworkState>> {
  const r = await runner.run(
    ["nsenter", "-t", String(pid), "-n", "ip", "-j", "-s", "addr", "show"],
    {
      allowFailure: true,
    },
  );
  if (r.code !== 0) return {};
  try {
    return parseIpAddr(r.stdout);
  } catch {
    return {};
  }
}
