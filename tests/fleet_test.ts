/**
 * The fleet, end to end on this machine: a hub and three agents, each in a network namespace of
 * its own on one switch. The agents refuse every incoming connection (a firewall rule in their
 * namespaces), so the hub reaches them only through the tunnels they dial. Real daemons, real
 * LXC, the real CLI.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiClient, type ApiError } from "../contract/client.ts";
import type { FleetHost, FleetMembership } from "../contract/fleet.ts";
import type { Operation } from "../contract/responses.ts";
import { connectUnix } from "../contract/websocket.ts";
import { HAS_NETNS, type Star, star } from "./netns.ts";
import { outpostArgv, spawnServer, TestDaemon, uniqueName } from "./helpers.ts";

const HEARTBEAT_S = 1;
/** The bound the hub promises: 2 × heartbeat + 5 s grace, plus a sweep (a heartbeat). */
const OFFLINE_BOUND_MS = 2 * HEARTBEAT_S * 1000 + 5_000 + HEARTBEAT_S * 1000;

class TestHub {
  proc?: Deno.ChildProcess;
  readonly api: ApiClient;

  constructor(readonly dir: string, readonly ns: string, readonly listen: string) {
    this.api = new ApiClient(join(dir, "hub.socket"));
  }

  async start(): Promise<void> {
    this.proc = await spawnServer([
      ...outpostArgv(),
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
    }).catch(async (err) => {
      throw new Error(`${err.message}: ${await this.log()}`);
    });
  }

  log(): Promise<string> {
    return Deno.readTextFile(join(this.dir, "..", "hub.log")).catch(() => "");
  }

  async kill9(): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.proc?.status;
    this.proc = undefined;
  }

  /** `outpost hub ...` / `outpost fleet ...` against this hub. */
  async cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const [exe, ...rest] = outpostArgv();
    const out = await new Deno.Command(exe, {
      args: [...rest, ...args, "--state-dir", this.dir],
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
    const start = Date.now();
    while (Date.now() - start < ms) {
      if (await ok().catch(() => false)) return Date.now() - start;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Timed out waiting for ${what}: ${await this.log()}`);
  }
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
    const net: Star = await star(3);
    const root = await Deno.makeTempDir({ prefix: "outpost-fleet-" });
    const hub = new TestHub(join(root, "hub"), net.hub.ns, `${net.hub.ip}:8443`);
    const agents: TestDaemon[] = [];
    try {
      await hub.start();
      for (const [i, a] of net.agents.entries()) {
        await net.refuseIncoming(i);
        agents.push(await TestDaemon.start(undefined, { netns: a.ns }));
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

      await hub.waitFor("three hosts online", async () => {
        const hosts = await hub.hosts();
        return hosts.length === 3 && hosts.every((h) => h.status === "online" && h.inventory);
      });
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
      const membership = await agents[0].api.get<FleetMembership>("/1.0/fleet");
      assert.equal(membership.tunnel, "connected");
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
      await agents[1].importBusybox();
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
