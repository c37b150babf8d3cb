/** A VM's network state, as its guest agent reports it (`guest-network-get-interfaces`). */
import type { NetworkState } from "../../contract/instance_state.ts";
import type { QgaClient } from "./qga.ts";

interface GuestInterface {
  name: string;
  "hardware-address"?: string;
  "ip-addresses"?: { "ip-address-type": "ipv4" | "ipv6"; "ip-address": string; prefix: number }[];
  statistics?: {
    "rx-bytes": number;
    "tx-bytes": number;
    "rx-packets": number;
    "tx-packets": number;
    "rx-errs": number;
    "tx-errs": number;
    "rx-dropped": number;
    "tx-dropped": number;
  };
}

export function parseGuestInterfaces(list: GuestInterface[]): Record<string, NetworkState> {
  const out: Record<string, NetworkState> = {};
  for (const i of list) {
    const loopback = i.name === "lo";
    const s = i.statistics;
    out[i.name] = {
      addresses: (i["ip-addresses"] ?? []).map((a) => ({
        family: a["ip-address-type"] === "ipv4" ? "inet" : "inet6",
        address: a["ip-address"],
        netmask: String(a.prefix),
        scope: loopback ? "local" : a["ip-address"].startsWith("fe80") ? "link" : "global",
      })),
      counters: {
        bytes_received: s?.["rx-bytes"] ?? 0,
        bytes_sent: s?.["tx-bytes"] ?? 0,
        packets_received: s?.["rx-packets"] ?? 0,
        packets_sent: s?.["tx-packets"] ?? 0,
        errors_received: s?.["rx-errs"] ?? 0,
        errors_sent: s?.["tx-errs"] ?? 0,
        packets_dropped_inbound: s?.["rx-dropped"] ?? 0,
        packets_dropped_outbound: s?.["tx-dropped"] ?? 0,
      },
      hwaddr: loopback ? "" : i["hardware-address"] ?? "",
      host_name: "",
      mtu: 0,
      state: "up",
      type: loopback ? "loopback" : "broadcast",
    };
  }
  return out;
}

export async function guestNetwork(qga: QgaClient): Promise<Record<string, NetworkState>> {
  const list = await qga.execute<GuestInterface[]>("guest-network-get-interfaces", undefined, {
    timeoutMs: 2000,
  });
  return parseGuestInterfaces(list);
}
