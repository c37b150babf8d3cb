/**
 * Two hosts on this machine: a server and a client network namespace joined by a veth pair on a
 * /24 of their own, for tests of remote control over a real (non-loopback) link. Everything made
 * is removed by `cleanup()`.
 */

export interface TwoHosts {
  server: string;
  client: string;
  serverIp: string;
  clientIp: string;
  cleanup(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Whether network namespaces can be made here (root, iproute2). */
export const HAS_NETNS = Deno.uid() === 0 &&
  (await new Deno.Command("sh", { args: ["-c", "command -v ip"], stdout: "null" }).output())
    .success;

export async function twoHosts(): Promise<TwoHosts> {
  const tag = crypto.randomUUID().slice(0, 6);
  const net = 100 + (crypto.getRandomValues(new Uint8Array(1))[0] % 150);
  const hosts: TwoHosts = {
    server: `op-s-${tag}`,
    client: `op-c-${tag}`,
    serverIp: `10.231.${net}.1`,
    clientIp: `10.231.${net}.2`,
    cleanup: async () => {
      for (const ns of [hosts.server, hosts.client]) await ip("netns", "del", ns).catch(() => {});
    },
  };
  try {
    await ip("netns", "add", hosts.server);
    await ip("netns", "add", hosts.client);
    const [vs, vc] = [`ops${tag}`, `opc${tag}`];
    await ip(
      "link",
      "add",
      vs,
      "netns",
      hosts.server,
      "type",
      "veth",
      "peer",
      "name",
      vc,
      "netns",
      hosts.client,
    );
    for (
      const [ns, dev, addr] of [[hosts.server, vs, hosts.serverIp], [
        hosts.client,
        vc,
        hosts.clientIp,
      ]]
    ) {
      await ip("-n", ns, "addr", "add", `${addr}/24`, "dev", dev);
      await ip("-n", ns, "link", "set", dev, "up");
      await ip("-n", ns, "link", "set", "lo", "up");
    }
  } catch (err) {
    await hosts.cleanup();
    throw err;
  }
  return hosts;
}

/** A hub and agents, each a network namespace, on one switch (a bridge in a namespace of its own). */
export interface Star {
  hub: { ns: string; ip: string };
  agents: { ns: string; ip: string; /** The agent's link on the switch. */ port: string }[];
  /** Cuts (or restores) an agent's link. */
  link(agent: number, up: boolean): Promise<void>;
  /** Refuses new TCP connections into an agent's namespace (answers to its own still pass). */
  refuseIncoming(agent: number): Promise<void>;
  cleanup(): Promise<void>;
}

export async function star(agents: number): Promise<Star> {
  const tag = crypto.randomUUID().slice(0, 6);
  const net = 100 + (crypto.getRandomValues(new Uint8Array(1))[0] % 150);
  const sw = `op-sw-${tag}`;
  const all: string[] = [sw];
  const s: Star = {
    hub: { ns: `op-h-${tag}`, ip: `10.232.${net}.1` },
    agents: Array.from({ length: agents }, (_, i) => ({
      ns: `op-a${i}-${tag}`,
      ip: `10.232.${net}.${i + 2}`,
      port: `opp${i}${tag}`,
    })),
    link: (i, up) => ip("-n", sw, "link", "set", s.agents[i].port, up ? "up" : "down"),
    refuseIncoming: async (i) => {
      const rules = [
        "table inet outpost_test {",
        "  chain input {",
        "    type filter hook input priority 0;",
        "    ct state established,related accept",
        "    iif lo accept",
        "    meta l4proto tcp ct state new drop",
        "  }",
        "}",
        "",
      ].join("\n");
      const out = await new Deno.Command("ip", {
        args: ["netns", "exec", s.agents[i].ns, "nft", "-f", "-"],
        stdin: "piped",
        stderr: "piped",
      }).spawn();
      const w = out.stdin.getWriter();
      await w.write(new TextEncoder().encode(rules));
      await w.close();
      const r = await out.output();
      if (!r.success) throw new Error(`nft: ${new TextDecoder().decode(r.stderr)}`);
    },
    cleanup: async () => {
      for (const ns of all) await ip("netns", "del", ns).catch(() => {});
    },
  };
  try {
    await ip("netns", "add", sw);
    await ip("-n", sw, "link", "add", "br0", "type", "bridge");
    await ip("-n", sw, "link", "set", "br0", "up");
    const nodes = [{ ns: s.hub.ns, ip: s.hub.ip, port: `oph${tag}` }, ...s.agents];
    for (const [i, n] of nodes.entries()) {
      all.push(n.ns);
      await ip("netns", "add", n.ns);
      const inner = `opi${i}${tag}`;
      await ip(
        "link",
        "add",
        inner,
        "netns",
        n.ns,
        "type",
        "veth",
        "peer",
        "name",
        n.port,
        "netns",
        sw,
      );
      await ip("-n", sw, "link", "set", n.port, "master", "br0");
      await ip("-n", sw, "link", "set", n.port, "up");
      await ip("-n", n.ns, "addr", "add", `${n.ip}/24`, "dev", inner);
      await ip("-n", n.ns, "link", "set", inner, "up");
      await ip("-n", n.ns, "link", "set", "lo", "up");
    }
  } catch (err) {
    await s.cleanup();
    throw err;
  }
  return s;
}
