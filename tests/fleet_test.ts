/**
 * The fleet, end to end on this machine: a hub and three agents, each in a network namespace of
 * its own on one switch. The agents refuse every incoming connection (a firewall rule in their
 * namespaces), so the hub reaches them only through the tunnels they dial. Real daemons, real
 * LXC, the real CLI.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ApiClient, type ApiError } from "../contract/client.ts";
import type { FleetHost, FleetMembership } from "../contract/fleet.ts";
import type { Operation } from "../contract/responses.ts";
import { connectUnix } from "../contract/websocket.ts";
import { HAS_NETNS, type Star, star } from "./netns.ts";
import {
  cliInNetns,
  outpostArgv,
  ROOT,
  spawnServer,
  TestDaemon,
  uniqueName,
  waitUntil,
} from "./helpers.ts";

const HEARTBEAT_S = 1;
/** The bound the hub promises: 2 × heartbeat + 5 s grace, plus a sweep (a heartbeat). */
const OFFLINE_BOUND_MS = 2 * HEARTBEAT_S * 1000 + 5_000 + HEARTBEAT_S * 1000;

class TestHub {
  proc?: Deno.ChildProcess;
  readonly api: ApiClient;

  constructor(readonly dir: string, readonly ns: string, readonly listen: string) {
    this.api = new ApiClient(join(dir, "hub.socket"));
  }

  /** Starts the hub, from this checkout or from the program at `main` (another build). */
  async start(main?: string): Promise<void> {
    const argv = outpostArgv();
    if (main) argv[argv.length - 1] = main;
    this.proc = await spawnServer([
      ...argv,
      "hub",
      "--state-dir",
      this.dir,
      "--listen",
      this.listen,
      "--heartbeat",
      String(HEARTBEAT_S),
    ], {
      logFile: join(this.dir, "..", "hub.log"),
      netns: this.ns,
      ready: () => this.api.get("/fleet/v1"),
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${await this.log()}`);
    });
  }

  log(): Promise<string> {
    return Deno.readTextFile(join(this.dir, "..", "hub.log")).catch(() => "");
  }

  async kill9(): Promise<void> {
    try {
      this.proc?.kill("SIGKILL");
    } catch { /* it has gone already */ }
    await this.proc?.status;
    this.proc = undefined;
  }

  /** `outpost hub ...` / `outpost fleet ...` against this hub. */
  async cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const [exe, ...rest] = outpostArgv();
    const out = await new Deno.Command(exe, {
      args: [...rest, "--state-dir", this.dir, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  async token(...opts: string[]): Promise<string> {
    const r = await this.cli("hub", "token", "create", ...opts);
    assert.equal(r.code, 0, r.stderr);
    const token = r.stdout.split("\n")[1];
    assert.match(token, /^outpost-join\./);
    assert.match(r.stdout, /curl -fsSLk --pinnedpubkey 'sha256\/\/[A-Za-z0-9+/=]+' https:\/\//);
    return token;
  }

  hosts(query = ""): Promise<FleetHost[]> {
    return this.api.get<FleetHost[]>(`/fleet/v1/hosts${query}`);
  }

  async waitFor(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<number> {
    return await waitUntil(what, ok, ms).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${await this.log()}`);
    });
  }
}

/** A copy of this checkout (its modules too) changed by `change`: another build to serve. */
async function buildCopy(
  root: string,
  name: string,
  change: (src: string) => Promise<void>,
): Promise<string> {
  const src = join(root, name);
  await Deno.mkdir(src);
  const copy = await new Deno.Command("bash", {
    args: [
      "-c",
      `tar -C '${ROOT}' --exclude=./.git --exclude=./dist -cf - . | tar -C '${src}' -xf -`,
    ],
  }).output();
  assert.ok(copy.success, "the checkout copies");
  await change(src);
  return src;
}

interface Installed {
  prefix: string;
  bin: string;
  state: string;
}

/** The installed host's upgrade and daemon logs, for a failed assertion to show. */
async function installedLogs(i: Installed): Promise<string> {
  const tail = async (f: string) =>
    `--- ${f}\n${
      (await Deno.readTextFile(join(i.state, f)).catch((e) => String(e))).slice(-6_000)
    }`;
  const ps = new TextDecoder().decode(
    (await new Deno.Command("pgrep", { args: ["-af", i.prefix], stdout: "piped" }).output()).stdout,
  );
  return [await tail("upgrade/upgrade.log"), await tail("daemon.log"), `--- processes\n${ps}`]
    .join("\n");
}

/**
 * Stops and removes an outpost the served install script put in place; answers what of it was
 * still running after `install.sh --uninstall` (nothing, when uninstalling works).
 */
async function uninstall(i: Installed): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [join(i.prefix, "install.sh"), "--uninstall", "--purge", "--state-dir", i.state],
    env: { OUTPOST_PREFIX: i.prefix, OUTPOST_BIN: i.bin },
    stdout: "null",
    stderr: "piped",
  }).output();
  const left = new TextDecoder().decode(
    (await new Deno.Command("pgrep", { args: ["-af", i.prefix], stdout: "piped" }).output()).stdout,
  ).split("\n").filter((l) => l && !/ (Z|defunct)/.test(l) && !l.includes("pgrep")).join("\n");
  // Whatever of it still runs (a supervisor, a daemon) goes too: the host is left as found.
  await new Deno.Command("pkill", { args: ["-KILL", "-f", i.prefix] }).output();
  await Deno.remove(i.prefix, { recursive: true }).catch(() => {});
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return left;
}

/** Runs a command in an instance on `host` through the hub, over the exec websockets. */
async function execThroughHub(
  hub: TestHub,
  host: string,
  instance: string,
  command: string[],
): Promise<{ stdout: string; code: number }> {
  const base = `/fleet/v1/hosts/${host}`;
  const op = await hub.api.start("POST", `${base}/1.0/instances/${instance}/exec`, {
    body: { command, "wait-for-websocket": true, interactive: false },
  });
  const fds = (op.metadata as { fds: Record<string, string> }).fds;
  const socket = (fd: string) =>
    connectUnix(
      join(hub.dir, "hub.socket"),
      `${base}/1.0/operations/${op.id}/websocket?secret=${fds[fd]}`,
    );
  const control = await socket("control");
  const stdin = await socket("0");
  const stdout = await socket("1");
  const stderr = await socket("2");
  await stdin.send("");
  let out = "";
  for await (const m of stdout) {
    if (m.type === "binary") out += new TextDecoder().decode(m.data);
    else break;
  }
  const done = await hub.api.get<Operation>(`${base}/1.0/operations/${op.id}/wait?timeout=30`);
  for (const ws of [control, stdin, stdout, stderr]) await ws.close().catch(() => {});
  return { stdout: out, code: Number((done.metadata as { return: number }).return) };
}

Deno.test({
  name: "a hub and three agents behind a firewall: enroll, list, control through the tunnel, " +
    "offline and back, a dead hub leaves the hosts working",
  ignore: !HAS_NETNS,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const net: Star = await star(4);
    const root = await Deno.makeTempDir({ prefix: "outpost-fleet-" });
    const hub = new TestHub(join(root, "hub"), net.hub.ns, `${net.hub.ip}:8443`);
    const agents: TestDaemon[] = [];
    let installed: Installed | undefined;
    try {
      await hub.start();
      for (const [i, a] of net.agents.entries()) {
        await net.refuseIncoming(i);
        if (i < 3) agents.push(await TestDaemon.start(undefined, { netns: a.ns }));
      }

      // The firewall holds: nothing in the hub's namespace can open a connection to an agent.
      const probe = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          net.hub.ns,
          "curl",
          "-s",
          "-m",
          "2",
          `http://${net.agents[0].ip}:22`,
        ],
        stdout: "null",
        stderr: "null",
      }).output();
      assert.equal(probe.code, 28, "a connection from the hub to an agent must time out");

      // Enrollment: two hosts on one token of two uses, one on a single-use token.
      const paris = await hub.token("--uses", "2", "--label", "site=paris");
      const berlin = await hub.token("--label", "site=berlin", "--expires", "10m");
      assert.equal((await agents[0].cli("enroll", "--token", paris, "--name", "edge-1")).code, 0);
      assert.equal((await agents[1].cli("enroll", "--token", paris, "--name", "edge-2")).code, 0);
      const third = await agents[2].cli("enroll", "--token", berlin, "--name", "edge-3");
      assert.equal(third.code, 0, third.stderr);
      assert.match(third.stdout, /Enrolled as "edge-3" with the hub at https:\/\/10\.232\./);

      // A used token is refused, and so is an expired one, with a one-line error.
      const reused = await agents[2].cli("enroll", "--token", berlin, "--name", "edge-9");
      assert.equal(reused.code, 1);
      assert.match(
        reused.stderr,
        /^Error: The join token is invalid, expired, revoked or used up\n$/,
      );
      const shortLived = await hub.token("--expires", "1s");
      await new Promise((r) => setTimeout(r, 1_500));
      const expired = await agents[2].cli("enroll", "--token", shortLived, "--name", "edge-9");
      assert.equal(expired.code, 1);
      assert.match(expired.stderr, /expired/);
      const garbage = await agents[2].cli("enroll", "--token", "outpost-join.AAAA");
      assert.equal(garbage.code, 1);
      assert.match(garbage.stderr, /^Error: Invalid join token/);

      // A fresh host: the printed one-line install command, run as printed (plus where to put
      // things), downloads the agent from the pinned hub, checks it, installs and enrolls it.
      const created = await hub.cli("hub", "token", "create", "--label", "site=lyon");
      const line = created.stdout.split("\n").find((l) => l.startsWith("curl "))!;
      const fresh = join(root, "fresh");
      installed = {
        prefix: join(fresh, "opt"),
        bin: join(fresh, "bin", "outpost"),
        state: join(fresh, "state"),
      };
      const install = await new Deno.Command("nsenter", {
        args: [
          `--net=/run/netns/${net.agents[3].ns}`,
          "--",
          "sh",
          "-c",
          `${line} --name edge-4 --prefix ${installed.prefix} --bin ${installed.bin} --state-dir ${installed.state}`,
        ],
        // No default network: its dnsmasq would outlive the namespace.
        env: { OUTPOST_NO_NETWORK: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const installLog = new TextDecoder().decode(install.stdout) +
        new TextDecoder().decode(install.stderr);
      assert.equal(install.code, 0, installLog);
      assert.match(installLog, /Enrolled as "edge-4" with the hub at https:\/\/10\.232\./);
      // A tampered download is refused before anything runs.
      const script = await (await hub.api.fetch("GET", "/install.sh")).text();
      const tampered = script.replace(/^SHA256='[0-9a-f]+'$/m, `SHA256='${"0".repeat(64)}'`);
      const refused = await new Deno.Command("nsenter", {
        args: [
          `--net=/run/netns/${net.agents[3].ns}`,
          "--",
          "sh",
          "-s",
          "--",
          "--token",
          "x",
          "--prefix",
          join(fresh, "never"),
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = refused.stdin.getWriter();
      await w.write(
        new TextEncoder().encode(tampered.replace(/^HUB=.*$/m, `HUB='https://${net.hub.ip}:8443'`)),
      );
      await w.close();
      const refusedOut = await refused.output();
      assert.equal(refusedOut.code, 1);
      assert.match(
        new TextDecoder().decode(refusedOut.stderr),
        /does not have the expected sha256/,
      );
      assert.ok(!existsSync(join(fresh, "never")));

      await hub.waitFor("four hosts online", async () => {
        const hosts = await hub.hosts();
        return hosts.length === 4 && hosts.every((h) => h.status === "online" && h.inventory);
      });
      // A fleet upgrade: the hub serves a new build; the installed host fetches, checks and
      // installs it, restarts its daemon and reports the new build.
      const next = await buildCopy(root, "next", (src) =>
        Deno.writeTextFile(
          join(src, "contract", "version.ts"),
          'export const VERSION = "0.1.0-next";\n',
        ));
      await hub.kill9();
      await hub.start(join(next, "main.ts"));
      await hub.waitFor(
        "four hosts back",
        async () => (await hub.hosts()).filter((h) => h.status === "online").length === 4,
      );
      const up = await hub.cli("fleet", "upgrade", "--label", "site=lyon", "--wait", "600");
      assert.equal(up.code, 0, up.stdout + up.stderr + await installedLogs(installed));
      assert.match(up.stdout, /edge-4: started/);
      assert.match(up.stdout, /edge-4: upgraded to [0-9a-f]{12}/);
      await hub.waitFor("edge-4 to report how its upgrade went", async () => {
        const h = await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-4");
        return h.inventory!.version === "0.1.0-next" &&
          h.inventory!.last_upgrade?.result === "upgraded";
      });
      // Hosts run from a checkout say they cannot be upgraded this way.
      const notInstalled = await hub.cli(
        "fleet",
        "upgrade",
        "--label",
        "site=berlin",
        "--wait",
        "0",
      );
      assert.equal(notInstalled.code, 1);
      assert.match(notInstalled.stdout, /edge-3: failed .*source checkout/);

      // A build whose daemon does not start is rolled back: the host comes back on the old one.
      const broken = await buildCopy(root, "broken", async (src) => {
        const f = join(src, "daemon", "daemon.ts");
        await Deno.writeTextFile(
          f,
          `throw new Error("a broken build");\n${await Deno.readTextFile(f)}`,
        );
      });
      await hub.kill9();
      await hub.start(join(broken, "main.ts"));
      await hub.waitFor(
        "four hosts back",
        async () => (await hub.hosts()).filter((h) => h.status === "online").length === 4,
      );
      const down = await hub.cli("fleet", "upgrade", "--label", "site=lyon", "--wait", "600");
      const downLog = down.stdout + down.stderr;
      assert.equal(down.code, 1, downLog + await installedLogs(installed));
      assert.ok(
        /edge-4: rolled back: the new build did not come up/.test(down.stdout),
        downLog + await installedLogs(installed),
      );
      const rolledBack = await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-4");
      assert.equal(rolledBack.status, "online");
      assert.equal(rolledBack.inventory!.version, "0.1.0-next");
      await hub.kill9();
      await hub.start();
      await hub.waitFor(
        "four hosts back on this build's hub",
        async () => (await hub.hosts()).filter((h) => h.status === "online").length === 4,
      );

      assert.equal(await uninstall(installed), "", "install.sh --uninstall stops every process");
      installed = undefined;
      await hub.waitFor(
        "edge-4 offline once uninstalled",
        async () => (await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-4")).status === "offline",
      );
      assert.equal((await hub.cli("fleet", "remove", "edge-4")).code, 0);
      const hosts = await hub.hosts();
      assert.deepEqual(hosts.map((h) => h.name), ["edge-1", "edge-2", "edge-3"]);
      assert.deepEqual(hosts.map((h) => h.labels.site), ["paris", "paris", "berlin"]);
      assert.ok(hosts.every((h) => h.inventory!.cpus > 0 && h.inventory!.version !== ""));
      const inParis = await hub.hosts("?label=site%3Dparis");
      assert.deepEqual(inParis.map((h) => h.name), ["edge-1", "edge-2"]);
      const table = await hub.cli("fleet", "hosts", "--label", "site=berlin");
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /edge-3 \| ONLINE/);
      assert.doesNotMatch(table.stdout, /edge-1/);
      await hub.waitFor(
        "edge-1 to say its tunnel is up",
        async () => (await agents[0].api.get<FleetMembership>("/1.0/fleet")).tunnel === "connected",
      );
      const membership = await agents[0].api.get<FleetMembership>("/1.0/fleet");
      assert.equal(membership.name, "edge-1");

      // Control through the tunnel: launch a container on edge-1 and exec in it via the hub.
      await agents[0].importBusybox();
      const name = uniqueName("fl");
      const base = "/fleet/v1/hosts/edge-1";
      const edge1 = new ApiClient(join(hub.dir, "hub.socket"), { basePath: base });
      await edge1.run("POST", "/1.0/instances", {
        body: { name, source: { type: "image", alias: "busybox" }, start: true },
      });
      assert.equal(await agents[0].status(name), "Running");
      const ran = await execThroughHub(hub, "edge-1", name, [
        "sh",
        "-c",
        "echo hi-from-$(hostname)",
      ]);
      assert.equal(ran.stdout, `hi-from-${name}\n`);
      assert.equal(ran.code, 0);
      const failed = await execThroughHub(hub, "edge-1", name, ["sh", "-c", "exit 7"]);
      assert.equal(failed.code, 7);
      await hub.waitFor("the inventory to show the instance", async () => {
        const h = await hub.api.get<FleetHost>(`${base}`);
        return h.inventory!.instances.some((i) => i.name === name && i.status === "Running");
      });
      // Fan-out: a command in the running instances of every host labelled site=paris.
      const edge2 = new ApiClient(join(hub.dir, "hub.socket"), {
        basePath: "/fleet/v1/hosts/edge-2",
      });
      await agents[1].importBusybox();
      const other = uniqueName("fl");
      await edge2.run("POST", "/1.0/instances", {
        body: { name: other, source: { type: "image", alias: "busybox" }, start: true },
      });
      await hub.waitFor("both paris hosts to report their instance", async () => {
        const hosts = await hub.hosts("?label=site%3Dparis");
        return hosts.every((h) => h.inventory!.instances.some((i) => i.status === "Running"));
      });
      const fanned = await hub.cli("fleet", "exec", "--label", "site=paris", "--", "hostname");
      assert.equal(fanned.code, 0, fanned.stderr);
      assert.match(fanned.stdout, new RegExp(`== edge-1/${name}: exit 0\n${name}\n`));
      assert.match(fanned.stdout, new RegExp(`== edge-2/${other}: exit 0\n${other}\n`));
      assert.match(fanned.stdout, /2 of 2 succeeded/);
      const missing = await hub.cli(
        "fleet",
        "exec",
        "--label",
        "site=berlin",
        "--instance",
        "nope",
        "--",
        "true",
      );
      assert.equal(missing.code, 1);
      assert.match(missing.stdout, /== edge-3\/nope: error: .*not found/i);
      await agents[1].ok("delete", "--force", other);
      edge2.close();

      // One scrape for the whole fleet: every online host's metrics, labelled with the host.
      const metrics = await (await hub.api.fetch("GET", "/fleet/v1/metrics")).text();
      assert.match(
        metrics,
        new RegExp(`incus_cpu_seconds_total\\{host="edge-1",[^}]*name="${name}"`),
      );
      assert.equal((metrics.match(/^# TYPE incus_cpu_seconds_total /gm) ?? []).length, 1);

      // Remote use through the hub: an admin client (in edge-3's namespace, so it reaches the
      // hub over the network) redeems a hub trust token, then runs commands on edge-1.
      const trusted = await hub.cli("hub", "trust", "add", "ops");
      assert.equal(trusted.code, 0, trusted.stderr);
      const adminToken = trusted.stdout.trim().split("\n").at(-1)!;
      const conf = join(root, "client-conf");
      const client = (...args: string[]) => cliInNetns(net.agents[2].ns, conf, ...args);
      const added = await client(
        "remote",
        "add",
        "hub",
        `https://${net.hub.ip}:8443`,
        "--token",
        adminToken,
      );
      assert.equal(added.code, 0, added.stderr);
      const listed = await client("list", "hub:edge-1:", "--format", "csv");
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, new RegExp(`^${name},RUNNING`, "m"));
      const ps = await client("exec", `hub:edge-1:${name}`, "--", "ps");
      assert.equal(ps.code, 0, ps.stderr);
      assert.match(ps.stdout, /PID/);
      const viaRemote = await client("fleet", "hosts", "hub:", "--format", "csv");
      assert.equal(viaRemote.code, 0, viaRemote.stderr);
      assert.equal(viaRemote.stdout.trim().split("\n").length, 3);
      const noHost = await client("list", "hub:");
      assert.equal(noHost.code, 1);
      assert.match(noHost.stderr, /is a fleet hub: name a host/);
      // The redeemed token is spent: a second client cannot use it.
      const again = await cliInNetns(
        net.agents[1].ns,
        join(root, "other-conf"),
        "remote",
        "add",
        "hub2",
        `https://${net.hub.ip}:8443`,
        "--token",
        adminToken,
      );
      assert.equal(again.code, 1);
      assert.match(again.stderr, /refused the trust token/);

      // A host that is not there is a clear 404; a path outside /1.0 is refused.
      await assert.rejects(
        hub.api.get(`/fleet/v1/hosts/nohost/1.0`),
        (e: ApiError) => e.status === 404,
      );
      await assert.rejects(hub.api.get(`${base}/fleet/v1`), (e: ApiError) => e.status === 400);

      // Cut edge-2's link: offline within the bound, its last inventory kept; events queue.
      await net.link(1, false);
      const tookOffline = await hub.waitFor("edge-2 offline", async () => {
        const h = await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-2");
        return h.status === "offline";
      });
      assert.ok(tookOffline <= OFFLINE_BOUND_MS + 1_000, `offline after ${tookOffline} ms`);
      const away = await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-2");
      assert.ok(away.inventory && away.last_seen !== "");
      await assert.rejects(
        hub.api.get(`/fleet/v1/hosts/edge-2/1.0`),
        (e: ApiError) => e.status === 409 && /offline/.test(e.message),
      );
      // The host keeps working locally meanwhile, and its events wait for the hub.
      const local = uniqueName("lo");
      await agents[1].ok("launch", "busybox", local);
      await agents[1].ok("delete", "--force", local);
      const queued = await agents[1].api.get<FleetMembership>("/1.0/fleet");
      assert.ok(queued.queued_events > 0, JSON.stringify(queued));
      await net.link(1, true);
      await hub.waitFor("edge-2 back with its events", async () => {
        const h = await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-2");
        const events = await hub.api.get<{ event: { metadata?: { action?: string } } }[]>(
          "/fleet/v1/hosts/edge-2/events",
        );
        return h.status === "online" &&
          events.some((e) => e.event.metadata?.action === "instance-deleted");
      }, 60_000);

      // The hub dies: agents and their instances carry on, and show it as reconnecting.
      await hub.kill9();
      assert.equal(await agents[0].status(name), "Running");
      const stillThere = await agents[0].ok("exec", name, "--", "echo", "alive");
      assert.equal(stillThere, "alive\n");
      await agents[0].ok("delete", "--force", name);
      await hub.start();
      await hub.waitFor(
        "all back after the hub restarts",
        async () => (await hub.hosts()).every((h) => h.status === "online"),
        60_000,
      );
      const back = await hub.api.get<FleetHost>("/fleet/v1/hosts/edge-1");
      assert.ok(!back.inventory!.instances.some((i) => i.name === name));
    } catch (err) {
      console.error(await hub.log());
      for (const a of agents) console.error(await a.log());
      throw err;
    } finally {
      if (installed) await uninstall(installed).catch(() => {});
      await hub.kill9();
      for (const a of agents) {
        const all = await a.api.get<string[]>("/1.0/instances").catch(() => []);
        for (const url of all) {
          const n = url.split("/").pop()!;
          await a.ok("delete", "--force", n).catch(() => {});
        }
        await a.stop();
        await Deno.remove(a.dir, { recursive: true }).catch(() => {});
      }
      await net.cleanup();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
