/**
 * Listen addresses as `core.https_address` takes them, Incus's forms: `[::]:8443`, `[::]`,
 * `0.0.0.0:8443`, `127.0.0.1`, `:8443` (every address), `host.example:8443`. The port is 8443 when
 * not given.
 */

export const DEFAULT_HTTPS_PORT = 8443;

export interface ListenAddress {
  /** An IPv4 or IPv6 address (no brackets) or a DNS name; `::` for `:PORT`. */
  host: string;
  port: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-fA-F:.]{2,45}$/;
const DNS =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Parses a listen address; throws an Error naming what is wrong. */
export function parseListenAddress(value: string): ListenAddress {
  let host: string;
  let port = String(DEFAULT_HTTPS_PORT);
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(value);
  if (bracket) {
    host = bracket[1];
    if (bracket[2] !== undefined) port = bracket[2];
    if (!IPV6.test(host) || !host.includes(":")) {
      throw new Error(`"${host}" is not an IPv6 address`);
    }
  } else if ((value.match(/:/g) ?? []).length > 1) {
    // A bare IPv6 address: no port can follow it.
    host = value;
    if (!IPV6.test(host)) throw new Error(`"${value}" is not an IPv6 address`);
  } else {
    const at = value.lastIndexOf(":");
    host = at < 0 ? value : value.slice(0, at);
    if (at >= 0) port = value.slice(at + 1);
    if (host === "") host = "::";
    else if (!IPV4.test(host) && !DNS.test(host)) {
      throw new Error(`"${host}" is neither an IP address nor a host name`);
    }
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new Error(`"${port}" is not a port (1-65535)`);
  }
  return { host, port: Number(port) };
}

/** How an address is written in a URL (`[::1]:8443`, `10.0.0.1:8443`). */
export function formatListenAddress(a: ListenAddress): string {
  return `${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}
