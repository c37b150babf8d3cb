/**
 * Two hubs on one PostgreSQL database serve one fleet: either lists every host; a request for a
 * host whose tunnel the other hub holds is answered with an error naming that hub; when a hub
 * dies, its hosts fail over to the other. Hubs and agents in network namespaces; the agents
 * refuse every incoming connection.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiClient, type ApiError } from "../contract/client.ts";
import type { FleetHost } from "../contract/fleet.ts";
import { HAS_NETNS, star } from "./netns.ts";
import { HAS_POSTGRES, startPostgres } from "./postgres.ts";
import { outpostArgv, spawnServer, TestDaemon, waitUntil } from "./helpers.ts";

Deno.test({
  name:
    "two hubs on one PostgreSQL serve the same fleet, name each other, and take over a dead one's hosts",
  ignore: !HAS_NETNS || !HAS_POSTGRES,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const pg = await startPostgres();
    const net = await star(3);
    const root = await Deno.makeTempDir({ prefix: "outpost-fleetpg-" });
    const a = { ns: net.hub.ns, url: `https://${net.hub.ip}:8443`, dir: join(root, "hub-a") };
    const b = {
      ns: net.agents[0].ns,
      url: `https://${net.agents[0].ip}:8443`,
      dir: join(root, "hub-b"),
    };
    const procs: Deno.ChildProcess[] = [];
    const agents: TestDaemon[] = [];
    const api = (dir: string, basePath?: string) =>
      new ApiClient(join(dir, "hub.socket"), { basePath });
    const startHub = async (hub: typeof a, other: typeof a) => {
      const p = await spawnServer([
        ...outpostArgv(),
        "hub",
        "--state-dir",
        hub.dir,
        "--listen",
        `${new URL(hub.url).hostname}:8443`,
        "--url",
        hub.url,
        "--url",
        other.url,
        "--heartbeat",
        "1",
        "--database",
        pg.url,
      ], {
        logFile: join(root, "hubs.log"),
        netns: hub.ns,
        ready: () => api(hub.dir).get("/fleet/v1"),
      });
      procs.push(p);
      return p;
    };
    try {
      const hubA = await startHub(a, b);
      // Hubs of one fleet present one certificate: hub B takes hub A's from the database.
      await startHub(b, a);
      const fingerprint = async (dir: string) =>
        (await api(dir).get<{ fingerprint: string }>("/fleet/v1")).fingerprint;
      assert.equal(await fingerprint(b.dir), await fingerprint(a.dir));

      for (const i of [1, 2]) {
        await net.refuseIncoming(i);
        agents.push(await TestDaemon.start(undefined, { netns: net.agents[i].ns }));
      }
      const created = await api(a.dir).request<{ token: string }>("POST", "/fleet/v1/tokens", {
        body: { uses: 2 },
      });
      const token = (created.metadata as { token: string }).token;
      await agents[0].ok("enroll", "--token", token, "--name", "edge-1");
      await agents[1].ok("enroll", b.url, "--token", token, "--name", "edge-2");

      // Either hub lists both hosts online, each held by its own hub.
      for (const hub of [a, b]) {
        await waitUntil(`hub ${hub.url} to list both online`, async () => {
          const hosts = await api(hub.dir).get<FleetHost[]>("/fleet/v1/hosts");
          return hosts.length === 2 && hosts.every((h) => h.status === "online");
        });
      }
      const seen = await api(b.dir).get<FleetHost[]>("/fleet/v1/hosts");
      assert.deepEqual(seen.map((h) => [h.name, h.hub]), [["edge-1", a.url], ["edge-2", b.url]]);

      // A host is reached through the hub that holds it; the other hub names that hub.
      const server = await api(a.dir, "/fleet/v1/hosts/edge-1").get<{ environment: unknown }>(
        "/1.0",
      );
      assert.ok(server.environment);
      await assert.rejects(
        api(a.dir, "/fleet/v1/hosts/edge-2").get("/1.0"),
        (e: ApiError) => e.status === 409 && e.message.includes(`connected to the hub at ${b.url}`),
      );
      assert.ok(await api(b.dir, "/fleet/v1/hosts/edge-2").get("/1.0"));

      // Hub A dies: edge-1 reconnects to hub B (the token named both), which serves it.
      hubA.kill("SIGKILL");
      await hubA.status;
      await waitUntil("edge-1 to move to hub B", async () => {
        const h = await api(b.dir).get<FleetHost>("/fleet/v1/hosts/edge-1");
        return h.status === "online" && h.hub === b.url;
      }, 60_000);
      assert.ok(await api(b.dir, "/fleet/v1/hosts/edge-1").get("/1.0"));
    } catch (err) {
      console.error(await Deno.readTextFile(join(root, "hubs.log")).catch(() => ""));
      throw err;
    } finally {
      for (const p of procs) {
        try {
          p.kill("SIGKILL");
        } catch { /* gone */ }
        await p.status;
      }
      for (const d of agents) {
        await d.stop();
        await Deno.remove(d.dir, { recursive: true }).catch(() => {});
      }
      await net.cleanup();
      await pg.stop();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
