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
