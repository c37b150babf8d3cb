/**
 * Managed networks (`/1.0/networks`): Linux bridges with NAT to the uplink and one dnsmasq each
 * for DHCP and DNS (`drivers/network/bridge.ts` does the host side). Records live in the store;
 * the host side is brought back at each daemon start and removed completely on delete. A nic
 * device on a network is planned here at each instance start: its MAC and host-side name (kept as
 * volatile keys) and its DHCP host entry (the instance's name, its fixed address if it has one).
 */
import { z } from "zod";
import { BadRequest, Conflict, NotFound, PreconditionFailed } from "../contract/errors.ts";
import { createHash, randomBytes } from "node:crypto";
import { instanceUrl, networkUrl, profileUrl } from "../contract/urls.ts";
import type { BridgeDriver, BridgeSpec } from "../drivers/network/bridge.ts";
import { hostEntry, type Lease } from "../drivers/network/dnsmasq.ts";
import {
  chooseSubnet,
  formatCidr,
  type Ipv4Cidr,
  isHostAddress,
  overlaps,
  parseCidr,
  parseSubnet,
} from "../drivers/network/ipv4.ts";
import { formatCidr6, type Ipv6Cidr, parseCidr6, randomUla } from "../drivers/network/ipv6.ts";
import type { NicPlan } from "../drivers/driver.ts";
import type { Runner } from "../drivers/runner.ts";
import type { EventBus } from "./events.ts";
import type { Devices } from "./profiles.ts";
import type { NetworkRecord, Store } from "./store.ts";

/** The most networks the store takes. */
export const MAX_NETWORKS = 64;
export const DEFAULT_NETWORK = "outpostbr0";

/** Network (bridge) names: interface names the nftables table name can carry one to one. */
const NETWORK_NAME = /^[a-z][a-z0-9-]{0,14}$/;

export function checkNetworkName(name: string): void {
  if (typeof name !== "string" || !NETWORK_NAME.test(name)) {
    throw new BadRequest(
      `Invalid network name "${
        String(name).slice(0, 80)
      }": use 1-15 lower-case letters, digits and "-", starting with a letter`,
    );
  }
}

export interface NetworkKey {
  key: string;
  schema: z.ZodType<string>;
  default?: string;
  doc: string;
}

const bool = z.enum(["true", "false"], { error: "expected true or false" });
const DOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** The keys of a bridge network, declared once (listed in docs/config.md). */
export const NETWORK_KEYS: NetworkKey[] = [
  {
    key: "ipv4.address",
    schema: z.string().refine(
      (v) => {
        if (v === "auto" || v === "none") return true;
        const c = parseCidr(v);
        return c !== undefined && isHostAddress(c, c.address);
      },
      { error: 'expected "auto", "none" or the bridge\'s address and prefix such as 10.1.2.1/24' },
    ),
    default: "auto",
    doc:
      "The bridge's IPv4 address and subnet (`10.1.2.1/24`); `auto` picks a free /24 in 10.0.0.0/8 at create; `none` for no IPv4",
  },
  {
    key: "ipv4.nat",
    schema: bool,
    default: "true",
    doc: "Masquerade the subnet's traffic leaving by the host's other interfaces",
  },
  { key: "ipv4.dhcp", schema: bool, default: "true", doc: "Give instances addresses by DHCP" },
  {
    key: "ipv6.address",
    schema: z.string().refine((v) => v === "auto" || v === "none" || !!parseCidr6(v), {
      error: 'expected "auto", "none" or the bridge\'s address in a /64 such as fd42:1:2:3::1/64',
    }),
    default: "none",
    doc:
      "The bridge's IPv6 address and /64 (`fd42:1:2:3::1/64`); `auto` picks a random unique local /64 at create; instances configure themselves from its router advertisements (SLAAC)",
  },
  {
    key: "ipv6.nat",
    schema: bool,
    default: "true",
    doc: "Masquerade the /64's traffic leaving by the host's other interfaces",
  },
  {
    key: "dns.domain",
    schema: z.string().regex(DOMAIN, {
      error: "expected a DNS domain such as outpost or lan.example",
    }),
    default: "outpost",
    doc: "The domain instances' names resolve under (`c1.outpost`)",
  },
  {
    key: "bridge.mtu",
    schema: z.string().refine((v) => /^\d{4}$/.test(v) && Number(v) >= 1280 && Number(v) <= 9000, {
      error: "expected an MTU from 1280 to 9000",
    }),
    doc: "The bridge's MTU",
  },
];

function checkNetworkConfig(config: Record<string, string>): void {
  for (const [key, value] of Object.entries(config)) {
    if (key.startsWith("user.") && /^user\.[A-Za-z0-9._-]{1,250}$/.test(key)) {
      // deno-lint-ignore no-control-regex
      if (/\u0000/.test(value)) throw new BadRequest(`Invalid value for "${key}": NUL byte`);
      continue;
    }
    const decl = NETWORK_KEYS.find((k) => k.key === key);
    if (!decl) throw new BadRequest(`Unknown network config key "${String(key).slice(0, 80)}"`);
    if (typeof value !== "string") {
      throw new BadRequest(`Invalid value for "${key}": config values are strings`);
    }
    const r = decl.schema.safeParse(value);
    if (!r.success) {
      throw new BadRequest(
        `Invalid value for network config key "${key}": ${r.error.issues[0]?.message}`,
      );
    }
  }
}

/** The markdown reference of the network keys (for `docs/config.md`). */
export function networkReference(): string {
  return [
    "## Network keys (bridge)",
    "",
    "| key | default | description |",
    "|---|---|---|",
    ...NETWORK_KEYS.map((k) => `| ${k.key} | ${k.default ?? ""} | ${k.doc} |`),
    "| `user.*` |  | Free-form user data |",
    "",
  ].join("\n");
}

/** A lease as the API shows it. */
export interface NetworkLease {
  hostname: string;
  hwaddr: string;
  address: string;
  type: "static" | "dynamic";
}

export interface NetworkDeps {
  store: Store;
  events: EventBus;
  bridge: BridgeDriver;
  runner: Runner;
  dir: (name: string) => string;
  log: (msg: string) => void;
}

export class NetworkManager {
  constructor(private deps: NetworkDeps) {}

  list(): NetworkRecord[] {
    return this.deps.store.listNetworks();
  }

  get(name: string): NetworkRecord {
    const n = this.deps.store.getNetwork(name);
    if (!n) throw new NotFound(`Network "${String(name).slice(0, 80)}" not found`);
    return n;
  }

  /** The networks by name with their IPv4 address, for checking nic devices. */
  subnets(): Map<string, { ipv4?: string }> {
    return new Map(
      this.list().map((n) => [n.name, { ipv4: ipv4Of(n) ? n.config["ipv4.address"] : undefined }]),
    );
  }

  etag(n: NetworkRecord): string {
    const body = { config: n.config, description: n.description };
    return createHash("sha256").update(JSON.stringify(body)).digest("hex");
  }

  /** The URLs of the profiles and instances whose devices name the network. */
  usedBy(
    name: string,
    expanded: { profiles: [string, Devices][]; instances: [string, Devices][] },
  ): string[] {
    const uses = (devices: Devices) =>
      Object.values(devices).some((d) => d.type === "nic" && d.network === name);
    return [
      ...expanded.profiles.filter(([, d]) => uses(d)).map(([p]) => profileUrl(p)),
      ...expanded.instances.filter(([, d]) => uses(d)).map(([i]) => instanceUrl(i)),
    ];
  }

  async create(
    req: { name: string; description: string; type: string; config: Record<string, string> },
  ): Promise<NetworkRecord> {
    checkNetworkName(req.name);
    if (req.type !== "" && req.type !== "bridge") {
      throw new BadRequest(
        `Network type "${String(req.type).slice(0, 40)}" is not supported: use "bridge"`,
      );
    }
    checkNetworkConfig(req.config);
    if (this.deps.store.getNetwork(req.name)) {
      throw new Conflict(`Network "${req.name}" already exists`);
    }
    if (this.list().length >= MAX_NETWORKS) {
      throw new BadRequest(`There are already ${MAX_NETWORKS} networks: delete some first`);
    }
    if (await this.deps.bridge.exists(req.name)) {
      throw new Conflict(`The host already has an interface named "${req.name}"`);
    }
    const config = { ...req.config };
    const taken = await this.#takenSubnets();
    const want = config["ipv4.address"] ?? "auto";
    if (want === "auto") {
      const seed = randomBytes(2).readUInt16BE(0);
      const chosen = chooseSubnet(taken, seed);
      if (!chosen) throw new Conflict("No free /24 left in 10.0.0.0/8 for the network");
      config["ipv4.address"] = formatCidr(chosen);
    } else if (want !== "none") {
      const cidr = parseCidr(want)!;
      const clash = taken.find((t) => overlaps(t, cidr));
      if (clash) {
        throw new Conflict(
          `ipv4.address ${want} overlaps ${formatCidr(clash)}, already routed on this host`,
        );
      }
    }
    if (config["ipv6.address"] === "auto") {
      config["ipv6.address"] = formatCidr6(randomUla(randomBytes(7)));
    }
    const rec: NetworkRecord = {
      name: req.name,
      description: req.description,
      type: "bridge",
      config,
    };
    this.deps.store.putNetwork(rec);
    try {
      await this.deps.bridge.up(this.#spec(rec));
    } catch (err) {
      await this.deps.bridge.down(rec.name, this.deps.dir(rec.name)).catch(() => {});
      await Deno.remove(this.deps.dir(rec.name), { recursive: true }).catch(() => {});
      this.deps.store.deleteNetwork(rec.name);
      throw err;
    }
    this.deps.events.lifecycle("network-created", networkUrl(rec.name));
    return rec;
  }

  /** Replaces a network's config (PUT; PATCH merges first), honouring If-Match; applied at once. */
  async update(
    name: string,
    req: { description: string; config: Record<string, string> },
    ifMatch?: string,
  ): Promise<void> {
    const cur = this.get(name);
    if (ifMatch !== undefined && ifMatch.replaceAll('"', "") !== this.etag(cur)) {
      throw new PreconditionFailed(`Network "${name}" changed since it was read (ETag mismatch)`);
    }
    checkNetworkConfig(req.config);
    const config = { ...req.config };
    if ((config["ipv4.address"] ?? "auto") === "auto") {
      // Keep the subnet it has rather than moving the instances to another.
      config["ipv4.address"] = cur.config["ipv4.address"] ?? "none";
    } else if (
      config["ipv4.address"] !== cur.config["ipv4.address"] && config["ipv4.address"] !== "none"
    ) {
      const cidr = parseCidr(config["ipv4.address"])!;
      const others = (await this.#takenSubnets()).filter((t) =>
        !(ipv4Of(cur) && overlaps(t, ipv4Of(cur)!))
      );
      const clash = others.find((t) => overlaps(t, cidr));
      if (clash) {
        throw new Conflict(`ipv4.address ${config["ipv4.address"]} overlaps ${formatCidr(clash)}`);
      }
    }
    if (config["ipv6.address"] === "auto") {
      const had = cur.config["ipv6.address"];
      config["ipv6.address"] = had && had !== "none" ? had : formatCidr6(randomUla(randomBytes(7)));
    }
    const next: NetworkRecord = { ...cur, description: req.description, config };
    await this.deps.bridge.up(this.#spec(next));
    this.deps.store.putNetwork(next);
    this.deps.events.lifecycle("network-updated", networkUrl(name));
  }

  /** Deletes a network no profile or instance uses: dnsmasq, rules, bridge and files. */
  async delete(name: string, usedBy: string[]): Promise<void> {
    this.get(name);
    if (usedBy.length > 0) {
      throw new Conflict(
        `Network "${name}" is in use by ${usedBy.slice(0, 5).join(", ")}${
          usedBy.length > 5 ? ` and ${usedBy.length - 5} more` : ""
        }: remove its nic devices first`,
      );
    }
    await this.deps.bridge.down(name, this.deps.dir(name));
    await Deno.remove(this.deps.dir(name), { recursive: true }).catch(() => {});
    this.deps.store.deleteNetwork(name);
    this.deps.events.lifecycle("network-deleted", networkUrl(name));
  }

  /**
   * Renames a network no profile or instance uses: its bridge, rules and dnsmasq go under the old
   * name and come back under the new one, with its directory (its leases) moved.
   */
  async rename(name: string, to: string, usedBy: string[]): Promise<void> {
    const cur = this.get(name);
    checkNetworkName(to);
    if (usedBy.length > 0) {
      throw new Conflict(
        `Network "${name}" is in use by ${
          usedBy.slice(0, 5).join(", ")
        }: a network in use cannot be renamed`,
      );
    }
    if (this.deps.store.getNetwork(to)) throw new Conflict(`Network "${to}" already exists`);
    if (await this.deps.bridge.exists(to)) {
      throw new Conflict(`The host already has an interface named "${to}"`);
    }
    const next: NetworkRecord = { ...cur, name: to };
    await this.deps.bridge.down(name, this.deps.dir(name));
    await Deno.rename(this.deps.dir(name), this.deps.dir(to)).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    this.deps.store.transaction(() => {
      this.deps.store.deleteNetwork(name);
      this.deps.store.putNetwork(next);
    });
    await this.deps.bridge.up(this.#spec(next));
    this.deps.events.lifecycle("network-renamed", networkUrl(to), { old_name: name });
  }

  /** The DHCP leases of a network, and the fixed addresses of its instances. */
  async leases(name: string): Promise<NetworkLease[]> {
    const n = this.get(name);
    const dir = this.deps.dir(n.name);
    const out: NetworkLease[] = (await this.deps.bridge.leases(dir)).map((l: Lease) => ({
      hostname: l.hostname,
      hwaddr: l.hwaddr,
      address: l.address,
      type: "dynamic" as const,
    }));
    for (const h of await this.deps.bridge.hostEntries(dir)) {
      if (!h.address) continue;
      const dynamic = out.find((l) => l.hwaddr === h.hwaddr);
      if (dynamic) dynamic.type = "static";
      else out.push({ hostname: h.name, hwaddr: h.hwaddr, address: h.address, type: "static" });
    }
    return out;
  }

  /** Daemon start: brings every network's bridge, rules and dnsmasq back. */
  async restore(): Promise<void> {
    for (const n of this.list()) {
      try {
        await this.deps.bridge.up(this.#spec(n));
      } catch (err) {
        this.deps.log(`network ${n.name}: could not bring it up: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Plans an instance's nics for a start: the MAC and host-side name of each (new ones come back
   * as volatile keys to keep) and its DHCP host entry on its network.
   */
  async plan(
    instance: string,
    type: "container" | "virtual-machine",
    devices: Devices,
    config: Readonly<Record<string, string>>,
  ): Promise<{ nics: NicPlan[]; volatile: Record<string, string> }> {
    const nics: NicPlan[] = [];
    const volatile: Record<string, string> = {};
    const entries = new Map<string, string[]>();
    for (const [dev, d] of Object.entries(devices).sort(([a], [b]) => a.localeCompare(b))) {
      if (d.type !== "nic") continue;
      const hwKey = `volatile.${dev}.hwaddr`;
      const hwaddr = d.hwaddr ?? config[hwKey] ?? randomMac();
      if (!d.hwaddr && config[hwKey] !== hwaddr) volatile[hwKey] = hwaddr;
      const hostName = d.host_name ??
        `${type === "container" ? "veth" : "tap"}${randomBytes(4).toString("hex")}`;
      volatile[`volatile.${dev}.host_name`] = hostName;
      const nic = { device: dev, name: d.name ?? dev, hwaddr, hostName };
      if (d.network === undefined) {
        // A host bridge (it must exist and be a bridge), or a point-to-point link.
        if (d.parent && !(await this.deps.bridge.isBridge(d.parent))) {
          throw new BadRequest(`Device "${dev}": parent "${d.parent}" is not a bridge on the host`);
        }
        nics.push({ ...nic, bridge: d.parent });
        continue;
      }
      const net = this.get(d.network);
      nics.push({
        ...nic,
        bridge: net.name,
        mtu: net.config["bridge.mtu"] ? Number(net.config["bridge.mtu"]) : undefined,
      });
      const lines = entries.get(net.name) ?? [];
      lines.push(hostEntry(hwaddr, instance, d["ipv4.address"]));
      entries.set(net.name, lines);
    }
    for (const n of this.list()) {
      await this.deps.bridge.setHosts(this.deps.dir(n.name), instance, entries.get(n.name) ?? []);
    }
    return { nics, volatile };
  }

  /** An instance is gone: its DHCP host entries go too. */
  async forget(instance: string): Promise<void> {
    for (const n of this.list()) {
      await this.deps.bridge.setHosts(this.deps.dir(n.name), instance, []);
    }
  }

  #spec(n: NetworkRecord): BridgeSpec {
    return {
      name: n.name,
      dir: this.deps.dir(n.name),
      ipv4: ipv4Of(n),
      nat: (n.config["ipv4.nat"] ?? "true") === "true",
      ipv6: ipv6Of(n),
      nat6: (n.config["ipv6.nat"] ?? "true") === "true",
      dhcp: (n.config["ipv4.dhcp"] ?? "true") === "true",
      domain: n.config["dns.domain"] ?? "outpost",
      mtu: n.config["bridge.mtu"] ? Number(n.config["bridge.mtu"]) : undefined,
    };
  }

  /** The subnets routed on the host (its addresses and routes) and the other networks'. */
  async #takenSubnets(): Promise<Ipv4Cidr[]> {
    const out: Ipv4Cidr[] = [];
    for (const n of this.list()) {
      const c = ipv4Of(n);
      if (c) out.push(c);
    }
    const routes = await this.deps.runner.run(["ip", "-j", "-4", "route", "show", "table", "all"], {
      allowFailure: true,
    });
    try {
      for (const r of JSON.parse(routes.stdout || "[]") as { dst?: string; type?: string }[]) {
        if (!r.dst || r.dst === "default" || r.type === "broadcast" || r.type === "local") continue;
        const c = parseSubnet(r.dst);
        if (c) out.push(c);
      }
    } catch {
      // No routes read: the other checks still hold.
    }
    return out;
  }
}

function ipv6Of(n: NetworkRecord): Ipv6Cidr | undefined {
  const v = n.config["ipv6.address"];
  return v && v !== "none" && v !== "auto" ? parseCidr6(v) : undefined;
}

function ipv4Of(n: NetworkRecord): Ipv4Cidr | undefined {
  const v = n.config["ipv4.address"];
  return v && v !== "none" && v !== "auto" ? parseCidr(v) : undefined;
}

/** A random locally administered unicast MAC in Incus's range (10:66:6a). */
function randomMac(): string {
  const b = randomBytes(3);
  return `10:66:6a:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
}
