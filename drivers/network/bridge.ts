/**
 * The host side of a managed bridge: the Linux bridge and its addresses, its NAT rules to the
 * uplink (nftables, or iptables where nftables is missing), and its dnsmasq. `up()` brings all of it to what the spec says (at create, at each
 * daemon start, after a change) and is idempotent; `down()` removes every piece. dnsmasq runs
 * detached, like the instances, so a daemon restart does not take the network away.
 */
import { join } from "node:path";
import type { Runner } from "../runner.ts";
import { readHostFile } from "../hostfs.ts";
import {
  dnsmasqArgv,
  HOSTS_DIR,
  type Lease,
  LEASES_FILE,
  parseLeases,
  PID_FILE,
} from "./dnsmasq.ts";
import { formatCidr, type Ipv4Cidr } from "./ipv4.ts";
import { formatCidr6, type Ipv6Cidr } from "./ipv6.ts";
import { type Firewall, IptablesFirewall, NftFirewall, pickFirewall } from "./firewall.ts";

export interface BridgeSpec {
  name: string;
  /** The network's state directory (dnsmasq's files). */
  dir: string;
  /** The bridge's own address and subnet; undefined: no IPv4 (no DHCP, DNS or NAT). */
  ipv4?: Ipv4Cidr;
  nat: boolean;
  /** The bridge's IPv6 address in its /64; undefined: no IPv6. */
  ipv6?: Ipv6Cidr;
  nat6?: boolean;
  dhcp: boolean;
  domain: string;
  mtu?: number;
}

export class BridgeDriver {
  #firewall?: Promise<Firewall>;

  /** `firewall`: `nftables` or `iptables`; by default nftables where `nft` runs. */
  constructor(private runner: Runner, private opts: { firewall?: string } = {}) {}

  /** The firewall the NAT rules go through (picked once). */
  firewall(): Promise<Firewall> {
    this.#firewall ??= pickFirewall(this.runner, this.opts.firewall);
    return this.#firewall;
  }

  async exists(name: string): Promise<boolean> {
    const r = await this.runner.run(["ip", "-j", "link", "show", "dev", name], {
      allowFailure: true,
    });
    return r.code === 0;
  }

  /** Whether `name` is a bridge on the host (a nic's `parent`). */
  async isBridge(name: string): Promise<boolean> {
    const r = await this.runner.run(["ip", "-j", "-d", "link", "show", "dev", name], {
      allowFailure: true,
    });
    try {
      return r.code === 0 &&
        (JSON.parse(r.stdout) as { linkinfo?: { info_kind?: string } }[])[0]?.linkinfo
            ?.info_kind === "bridge";
    } catch {
      return false;
    }
  }

  /** Makes the bridge, its address, its rules and its dnsmasq be what `s` says. */
  async up(s: BridgeSpec): Promise<void> {
    await Deno.mkdir(join(s.dir, HOSTS_DIR), { recursive: true, mode: 0o755 });
    if (!(await this.exists(s.name))) {
      await this.runner.run(["ip", "link", "add", "dev", s.name, "type", "bridge"]);
    }
    if (s.mtu) await this.runner.run(["ip", "link", "set", "dev", s.name, "mtu", String(s.mtu)]);
    await this.runner.run(["ip", "-4", "addr", "flush", "dev", s.name]);
    if (s.ipv4) {
      await this.runner.run(["ip", "-4", "addr", "add", formatCidr(s.ipv4), "dev", s.name]);
    }
    await this.runner.run(["ip", "-6", "addr", "flush", "dev", s.name, "scope", "global"]);
    if (s.ipv6) {
      await this.runner.run(["sysctl", "-q", "-w", `net.ipv6.conf.${s.name}.disable_ipv6=0`]);
      // nodad: the bridge's own address is usable at once (dnsmasq binds to it).
      await this.runner.run([
        "ip",
        "-6",
        "addr",
        "add",
        formatCidr6(s.ipv6),
        "dev",
        s.name,
        "nodad",
      ]);
    }
    await this.runner.run(["ip", "link", "set", "dev", s.name, "up"]);
    await (await this.firewall()).apply({
      bridge: s.name,
      ipv4: s.ipv4,
      nat4: s.nat,
      ipv6: s.ipv6,
      nat6: s.nat6 ?? false,
    });
    if (s.ipv4 && s.nat) {
      await this.runner.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    }
    if (s.ipv6 && s.nat6) await this.#forwardIpv6();
    await this.#stopDnsmasq(s.dir);
    if (s.ipv4 || s.ipv6) {
      await this.runner.run(
        dnsmasqArgv({
          bridge: s.name,
          dir: s.dir,
          ipv4: s.ipv4,
          ipv6: s.ipv6,
          dhcp: s.dhcp,
          domain: s.domain,
        }),
      );
    }
  }

  /**
   * Turns IPv6 forwarding on. A host interface that takes router advertisements (accept_ra=1)
   * would stop taking them once the host forwards: it is set to 2 (take them anyway) first, so the
   * host keeps its own IPv6 addresses and routes.
   */
  async #forwardIpv6(): Promise<void> {
    const forwarding = await readHostFile(this.runner, "/proc/sys/net/ipv6/conf/all/forwarding");
    if (forwarding?.trim() === "1") return;
    const links = await this.runner.run(["ip", "-j", "link", "show"], { allowFailure: true });
    let names: string[] = [];
    try {
      names = (JSON.parse(links.stdout || "[]") as { ifname: string }[]).map((l) => l.ifname);
    } catch {
      // No list: no interface is changed.
    }
    for (const name of names) {
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) continue;
      const ra = await readHostFile(this.runner, `/proc/sys/net/ipv6/conf/${name}/accept_ra`);
      if (ra?.trim() !== "1") continue;
      // sysctl names an interface's dots as slashes.
      const key = `net.ipv6.conf.${name.replaceAll(".", "/")}.accept_ra=2`;
      await this.runner.run(["sysctl", "-q", "-w", key], { allowFailure: true });
    }
    await this.runner.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
  }

  /** Removes dnsmasq, the rules and the bridge (each whether or not it is still there). */
  async down(name: string, dir: string): Promise<void> {
    await this.#stopDnsmasq(dir);
    // Both kinds of rule go, whichever the daemon used before (a missing tool is no error).
    for (const fw of [new NftFirewall(this.runner), new IptablesFirewall(this.runner)]) {
      await fw.remove(name).catch(() => {});
    }
    if (await this.exists(name)) await this.runner.run(["ip", "link", "del", "dev", name]);
  }

  async leases(dir: string): Promise<Lease[]> {
    const text = await Deno.readTextFile(join(dir, LEASES_FILE)).catch(() => "");
    return parseLeases(text);
  }

  /** Writes (or, with no entries, removes) one instance's host entries for dnsmasq. */
  async setHosts(dir: string, instance: string, lines: string[]): Promise<void> {
    const file = join(dir, HOSTS_DIR, instance);
    if (lines.length === 0) {
      await Deno.remove(file).catch(() => {});
      return;
    }
    await Deno.mkdir(join(dir, HOSTS_DIR), { recursive: true, mode: 0o755 });
    const tmp = `${file}.tmp`;
    await Deno.writeTextFile(tmp, lines.join(""), { mode: 0o644 });
    await Deno.rename(tmp, file);
  }

  /** The host entries of every instance on the network (the fixed addresses among them). */
  async hostEntries(dir: string): Promise<{ hwaddr: string; address?: string; name: string }[]> {
    const out: { hwaddr: string; address?: string; name: string }[] = [];
    try {
      for await (const e of Deno.readDir(join(dir, HOSTS_DIR))) {
        if (!e.isFile || e.name.endsWith(".tmp")) continue;
        const text = await Deno.readTextFile(join(dir, HOSTS_DIR, e.name)).catch(() => "");
        for (const line of text.split("\n")) {
          const f = line.trim().split(",");
          if (f.length === 3) out.push({ hwaddr: f[0], address: f[1], name: f[2] });
          else if (f.length === 2) out.push({ hwaddr: f[0], name: f[1] });
        }
      }
    } catch {
      // No entries yet.
    }
    return out;
  }

  async #dnsmasqPid(dir: string): Promise<number | undefined> {
    const pidFile = join(dir, PID_FILE);
    const pid = Number((await Deno.readTextFile(pidFile).catch(() => "")).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    // (Through hostfs: Deno refuses /proc to a program without --allow-all.)
    const cmdline = (await readHostFile(this.runner, `/proc/${pid}/cmdline`)) ?? "";
    // A reused pid is not ours: the command line must be dnsmasq with this pid file.
    const args = cmdline.split("\0");
    if (!args[0].endsWith("dnsmasq") || !args.includes(`--pid-file=${pidFile}`)) return undefined;
    return pid;
  }

  async #stopDnsmasq(dir: string): Promise<void> {
    const pid = await this.#dnsmasqPid(dir);
    if (pid === undefined) return;
    // Through kill(1): the daemon's narrowed permissions do not let Deno.kill reach any pid.
    const r = await this.runner.run(["kill", "-TERM", String(pid)], { allowFailure: true });
    if (r.code !== 0) return;
    // Gone, or a zombie its parent (init) has not reaped yet: either way it serves no more.
    for (let i = 0; i < 50 && (await this.#dnsmasqPid(dir)) === pid; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await Deno.remove(join(dir, PID_FILE)).catch(() => {});
  }
}
