/** The addresses a listener can be reached at, as tokens and the server's info advertise them. */
import { networkInterfaces } from "node:os";
import { formatListenAddress, parseListenAddress } from "../contract/listen_address.ts";

/**
 * Where clients reach a listener on `value` (`core.https_address`): the address itself, or for a
 * wildcard (`[::]`, `0.0.0.0`, `:8443`) every global address of the host's interfaces.
 */
export function httpsAddresses(value: string): string[] {
  if (value === "") return [];
  const { host, port } = parseListenAddress(value);
  if (host !== "::" && host !== "0.0.0.0") return [formatListenAddress({ host, port })];
  const found: string[] = [];
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || (a.family === "IPv6" && /^fe80:/i.test(a.address))) continue;
      if (host === "0.0.0.0" && a.family !== "IPv4") continue;
      found.push(formatListenAddress({ host: a.address, port }));
    }
  }
  return found;
}
