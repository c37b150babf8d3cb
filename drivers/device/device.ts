/**
 * Device types, declared once as key tables (like the instance config keys): each type names
 * the instance types it fits, its keys (schema, required, live, doc) and a check of the device as a
 * whole. `docs/config.md` lists them (`deno task docs`). A device of a type or with a key outpost
 * does not have yet is refused by name, never kept and ignored.
 */
import { z } from "zod";
import { BadRequest } from "../../contract/errors.ts";
import type { InstanceType } from "../../contract/schemas.ts";
import { isHostAddress, parseCidr, parseIpv4 } from "../network/ipv4.ts";
import type { MountPlan } from "../driver.ts";
import { parseProxyAddress } from "./proxy.ts";

/** A device as the API carries it: string keys to string values, `type` among them. */
export type Device = Readonly<Record<string, string>>;

export interface DeviceKey {
  key: string;
  schema: z.ZodType<string>;
  required?: boolean;
  /** Whether the key can change while the instance runs. */
  live: boolean;
  doc: string;
}

export interface DeviceType {
  type: string;
  /** The instance types that take it. */
  fits: readonly InstanceType[];
  keys: DeviceKey[];
  doc: string;
  /** Checks the device as a whole once each key passed (throws BadRequest). */
  check?(name: string, dev: Device, ctx: DeviceContext): void;
}

/** What a device is checked against beyond its own keys. */
export interface DeviceContext {
  /** The instance's type; undefined in a profile (any type may use it). */
  instanceType?: InstanceType;
  /** The storage pools that exist. */
  pools: ReadonlySet<string>;
  /** The custom volumes that exist, as `pool/name` → content type. */
  volumes?: ReadonlyMap<string, "filesystem" | "block">;
  /** The managed networks that exist, with their IPv4 address (`10.1.2.1/24`), if any. */
  networks: ReadonlyMap<string, { ipv4?: string }>;
}

/** Device names: letters, digits and `._-`, as they become interface names and file names. */
const DEVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * An absolute path without `..`, white space, `\\`, `,` or control characters: it is written into
 * an fstab-format LXC mount entry, which has no escaping for them.
 */
const absolutePath = z.string().refine(
  (v) =>
    v.startsWith("/") && v.length <= 4096 && !v.split("/").includes("..") &&
    // deno-lint-ignore no-control-regex
    !/[\s\\,\u0000-\u001f\u007f]/.test(v),
  { error: 'expected an absolute path without "..", spaces, commas or backslashes' },
);
const bool = z.enum(["true", "false"], { error: "expected true or false" });
/** Pool and custom volume names: they become directory names. */
export const STORAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const poolName = z.string().regex(STORAGE_NAME, {
  error: 'expected a pool name (letters, digits and "._-")',
});

/** Interface names: what the kernel takes (at most 15 characters, no `/`, `:` or space). */
const ifName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/, {
  error: 'expected an interface name of at most 15 letters, digits and "_.-"',
});
const macAddress = z.string().regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, {
  error: "expected a MAC address such as 10:66:6a:01:02:03",
}).refine((v) => (parseInt(v.slice(0, 2), 16) & 1) === 0, {
  error: "expected a unicast MAC address",
});
const ipv4Address = z.string().refine((v) => parseIpv4(v) !== undefined, {
  error: "expected an IPv4 address such as 10.1.2.10",
});

const NIC: DeviceType = {
  type: "nic",
  fits: ["container", "virtual-machine"],
  keys: [
    {
      key: "network",
      schema: ifName,
      live: false,
      doc: "The managed network (bridge) it is on",
    },
    {
      key: "nictype",
      schema: z.enum(["bridged", "p2p"], { error: "expected bridged or p2p" }),
      live: false,
      doc:
        "Without `network`: `bridged` on a host bridge outpost does not manage (`parent`), or `p2p` (a veth or tap whose host side is left alone)",
    },
    {
      key: "parent",
      schema: ifName,
      live: false,
      doc: "The host bridge of a `nictype=bridged` nic",
    },
    {
      key: "name",
      schema: ifName,
      live: false,
      doc: "Its name in the instance (default: the device's name)",
    },
    {
      key: "hwaddr",
      schema: macAddress,
      live: false,
      doc:
        "Its MAC address (default: one made at the first start, kept in `volatile.DEVICE.hwaddr`)",
    },
    {
      key: "ipv4.address",
      schema: ipv4Address,
      live: false,
      doc: "A fixed address the network's DHCP server gives it (in the network's subnet)",
    },
    {
      key: "host_name",
      schema: ifName,
      live: false,
      doc: "The host side's interface name (default: made at each start)",
    },
  ],
  doc:
    "A network interface (a veth pair for a container, a tap for a VM): on a managed network, on a host bridge (`nictype=bridged`, `parent`), or point to point (`nictype=p2p`)",
};

const proxyAddress = z.string().refine((v) => parseProxyAddress(v) !== undefined, {
  error:
    "expected tcp:ADDRESS:PORT or udp:ADDRESS:PORT with an IPv4 address, such as tcp:127.0.0.1:80",
});

const PROXY: DeviceType = {
  type: "proxy",
  fits: ["container"],
  keys: [
    {
      key: "listen",
      schema: proxyAddress,
      required: true,
      live: false,
      doc: "Where the host listens (`tcp:0.0.0.0:8080`, `udp:0.0.0.0:5353`)",
    },
    {
      key: "connect",
      schema: proxyAddress,
      required: true,
      live: false,
      doc:
        "Where each connection (each UDP client's datagrams) goes inside the container (`tcp:127.0.0.1:80`)",
    },
    {
      key: "bind",
      schema: z.literal("host", { error: 'only "host" is supported yet' }),
      live: false,
      doc: "Which side listens: `host` only yet",
    },
  ],
  doc: "A TCP or UDP port of the host forwarded into the container",
  check(name, dev) {
    const [listen, connect] = [parseProxyAddress(dev.listen), parseProxyAddress(dev.connect)];
    if (listen && connect && listen.transport !== connect.transport) {
      throw new BadRequest(
        `Device "${name}": listen and connect must both be tcp or both be udp`,
      );
    }
  },
};

const NONE: DeviceType = {
  type: "none",
  fits: ["container", "virtual-machine"],
  keys: [],
  doc: "Nothing: hides a device of the same name a profile gives",
};

const DISK: DeviceType = {
  type: "disk",
  fits: ["container", "virtual-machine"],
  keys: [
    {
      key: "path",
      schema: absolutePath,
      live: false,
      doc: "Where it shows in the instance (`/` for the root disk; none for a VM's block volume)",
    },
    {
      key: "pool",
      schema: poolName,
      live: false,
      doc: "The storage pool it is on (the root disk, or a custom volume's pool)",
    },
    {
      key: "source",
      schema: z.string().refine(
        (v) => absolutePath.safeParse(v).success || poolName.safeParse(v).success,
        {
          error: "expected an absolute host path, or a custom volume's name",
        },
      ),
      live: false,
      doc:
        "A host directory to bind-mount at `path` (containers), or with `pool` the custom volume to attach",
    },
    { key: "readonly", schema: bool, live: false, doc: "Mount it read-only" },
    {
      key: "shift",
      schema: bool,
      live: false,
      doc:
        "Show the host's ids as the container's own through an idmapped mount (host root's files as the container root's: give it with care, with `readonly` where it can be); custom volumes of unprivileged containers are shifted unless `shift=false`",
    },
  ],
  doc:
    "A disk: the root disk (`path=/` on a pool), a custom volume (`pool`, `source`: a filesystem volume mounted at `path` in a container, a block volume as an extra disk of a VM), or a host directory bind-mounted into a container (`source`, `path`)",
  check(name, dev, ctx) {
    if (dev.path === "/") {
      if (!dev.pool) throw new BadRequest(`Device "${name}": the root disk needs a pool`);
      if (dev.source) {
        throw new BadRequest(`Device "${name}": the root disk is on a pool, not a host path`);
      }
      return;
    }
    if (!dev.source) {
      throw new BadRequest(
        `Device "${name}": a disk other than the root needs a source (a host directory, or a custom volume with pool)`,
      );
    }
    if (dev.pool) return checkVolumeDisk(name, dev, ctx);
    if (!dev.source.startsWith("/")) {
      throw new BadRequest(
        `Device "${name}": source "${
          shown(dev.source)
        }" is not an absolute host path (give pool for a custom volume)`,
      );
    }
    if (!dev.path) throw new BadRequest(`Device "${name}": a disk device needs "path"`);
    if (ctx.instanceType === "virtual-machine") {
      throw new BadRequest(`Device "${name}": host directories for VMs are not supported yet`);
    }
  },
};

/** A custom volume as a disk: it must exist; filesystem volumes go to containers, block ones to VMs. */
function checkVolumeDisk(name: string, dev: Device, ctx: DeviceContext): void {
  if (dev.source.startsWith("/")) {
    throw new BadRequest(
      `Device "${name}": with pool, source names a custom volume, not a host path`,
    );
  }
  if (!ctx.pools.has(dev.pool)) return; // refused below, naming the pool
  const content = ctx.volumes?.get(`${dev.pool}/${dev.source}`);
  if (!content) {
    throw new BadRequest(
      `Device "${name}": custom volume "${shown(dev.source)}" does not exist in pool "${dev.pool}"`,
    );
  }
  if (content === "filesystem") {
    if (!dev.path) throw new BadRequest(`Device "${name}": a filesystem volume needs "path"`);
    if (ctx.instanceType === "virtual-machine") {
      throw new BadRequest(
        `Device "${name}": filesystem volumes for VMs are not supported yet: use a block volume`,
      );
    }
  } else {
    if (dev.path) throw new BadRequest(`Device "${name}": a block volume takes no "path"`);
    if (ctx.instanceType === "container") {
      throw new BadRequest(
        `Device "${name}": block volumes are for VMs: give a container a filesystem volume`,
      );
    }
  }
}

/** Every device type outpost has, by name. */
export const DEVICE_TYPES: readonly DeviceType[] = [NONE, DISK, NIC, PROXY];

/** Types Incus has that outpost does not yet: refused by name. */
const NOT_YET = new Set([
  "unix-char",
  "unix-block",
  "usb",
  "gpu",
  "infiniband",
  "tpm",
  "pci",
  "unix-hotplug",
]);

// deno-lint-ignore no-control-regex
const shown = (s: string) => s.replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 80);

/** Checks one device (its name, type, keys and values), throwing BadRequest naming what is wrong. */
export function checkDevice(name: string, dev: Device, ctx: DeviceContext): DeviceType {
  if (!DEVICE_NAME.test(name)) {
    throw new BadRequest(
      `Invalid device name "${shown(name)}": use letters, digits and "._-" only`,
    );
  }
  if (!dev.type) throw new BadRequest(`Device "${name}" has no type`);
  const decl = DEVICE_TYPES.find((t) => t.type === dev.type);
  if (!decl) {
    if (NOT_YET.has(dev.type)) {
      throw new BadRequest(`Device "${name}": type "${dev.type}" is not supported yet`);
    }
    throw new BadRequest(`Device "${name}": unknown device type "${shown(dev.type)}"`);
  }
  if (ctx.instanceType && !decl.fits.includes(ctx.instanceType)) {
    throw new BadRequest(
      `Device "${name}": a ${dev.type} device does not fit a ${ctx.instanceType}`,
    );
  }
  for (const [key, value] of Object.entries(dev)) {
    if (key === "type") continue;
    const k = decl.keys.find((d) => d.key === key);
    if (!k) {
      throw new BadRequest(
        `Device "${name}": unknown key "${shown(key)}" for a ${dev.type} device`,
      );
    }
    if (typeof value !== "string") {
      throw new BadRequest(`Device "${name}": the value of "${key}" must be a string`);
    }
    const r = k.schema.safeParse(value);
    if (!r.success) {
      throw new BadRequest(
        `Device "${name}": invalid "${key}" "${shown(value)}": ${r.error.issues[0]?.message}`,
      );
    }
  }
  for (const k of decl.keys) {
    if (k.required && dev[k.key] === undefined) {
      throw new BadRequest(`Device "${name}": a ${dev.type} device needs "${k.key}"`);
    }
  }
  decl.check?.(name, dev, ctx);
  if (dev.pool !== undefined && !ctx.pools.has(dev.pool)) {
    throw new BadRequest(`Device "${name}": storage pool "${shown(dev.pool)}" does not exist`);
  }
  if (dev.type === "nic") checkNic(name, dev, ctx);
  return decl;
}

/**
 * A nic is on a managed network, on a host bridge or point to point. A managed network must exist,
 * and a fixed address be a free host address of its subnet.
 */
function checkNic(name: string, dev: Device, ctx: DeviceContext): void {
  if (dev.network === undefined) {
    if (dev.nictype === "bridged" && !dev.parent) {
      throw new BadRequest(`Device "${name}": a bridged nic needs "parent" (a host bridge)`);
    }
    if (dev.nictype === "p2p" && dev.parent) {
      throw new BadRequest(`Device "${name}": a p2p nic takes no "parent"`);
    }
    if (!dev.nictype) {
      throw new BadRequest(
        `Device "${name}": a nic needs "network" (a managed network), or nictype=bridged with parent, or nictype=p2p`,
      );
    }
    if (dev["ipv4.address"] !== undefined) {
      throw new BadRequest(`Device "${name}": ipv4.address needs a managed network`);
    }
    return;
  }
  if (dev.nictype !== undefined || dev.parent !== undefined) {
    throw new BadRequest(`Device "${name}": a nic on a managed network takes no nictype or parent`);
  }
  const net = ctx.networks.get(dev.network);
  if (!net) throw new BadRequest(`Device "${name}": network "${dev.network}" does not exist`);
  const fixed = dev["ipv4.address"];
  if (fixed === undefined) return;
  const cidr = net.ipv4 ? parseCidr(net.ipv4) : undefined;
  if (!cidr) {
    throw new BadRequest(`Device "${name}": network "${dev.network}" has no IPv4 subnet`);
  }
  const address = parseIpv4(fixed)!;
  if (!isHostAddress(cidr, address) || address === cidr.address) {
    throw new BadRequest(
      `Device "${name}": ipv4.address ${fixed} is not a free host address of ${net.ipv4} (network "${dev.network}")`,
    );
  }
}

/**
 * Checks a whole device map, and that at most one disk is the root disk. A profile's devices are
 * checked the same way (without an instance type).
 */
export function checkDevices(
  devices: Readonly<Record<string, Device>>,
  ctx: DeviceContext,
): void {
  let root: string | undefined;
  for (const [name, dev] of Object.entries(devices)) {
    checkDevice(name, dev, ctx);
    if (isRootDisk(dev)) {
      if (root) throw new BadRequest(`Devices "${root}" and "${name}" are both a root disk`);
      root = name;
    }
  }
}

/** The host directories an instance's (expanded) disk devices bind-mount, by device name order. */
export function mountsOf(devices: Readonly<Record<string, Device>>): MountPlan[] {
  return Object.entries(devices)
    .filter(([, d]) =>
      d.type === "disk" && d.source !== undefined && d.pool === undefined && d.path !== "/"
    )
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([device, d]) => ({
      device,
      source: d.source,
      path: d.path,
      readonly: d.readonly === "true",
      shift: d.shift === "true",
    }));
}

export function isRootDisk(dev: Device): boolean {
  return dev.type === "disk" && dev.path === "/";
}

/** The markdown reference of the device types and their keys (for `docs/config.md`). */
export function deviceReference(): string {
  const out = ["## Devices", ""];
  for (const t of DEVICE_TYPES) {
    out.push(`### \`${t.type}\``, "", `${t.doc}. Fits: ${t.fits.join(", ")}.`, "");
    if (t.keys.length === 0) continue;
    out.push("| Key | Required | Live | Description |", "|---|---|---|---|");
    for (const k of t.keys) {
      out.push(
        `| \`${k.key}\` | ${k.required ? "yes" : "no"} | ${k.live ? "yes" : "no"} | ${k.doc} |`,
      );
    }
    out.push("");
  }
  const later = [...NOT_YET].map((t) => `\`${t}\``).join(", ");
  out.push(`Not supported yet (refused by name): ${later}.`, "");
  return out.join("\n");
}
