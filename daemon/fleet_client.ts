/**
 * The agent's end of the hub tunnel: while this host is enrolled, it keeps one websocket open to
 * the hub (dialed from here, so NAT and firewalls that pass outgoing HTTPS are no obstacle),
 * reconnecting with jittered backoff. Over it the hub's requests are served by the daemon's own
 * app (the same routes, websockets included), and the host reports a hello and heartbeats with
 * its inventory, and its lifecycle events. Events wait in a bounded queue while the hub is away
 * (the oldest dropped and counted) and go up when it is back. The daemon serves locally all the
 * while: the hub is never needed for the host to work.
 */
import type { Agent } from "../agent/agent.ts";
import type { FleetRecord } from "../agent/store.ts";
import { installInfo, lastUpgrade } from "../agent/upgrade.ts";
import { hubTransports } from "../agent/fleet.ts";
import { messageOf } from "../contract/errors.ts";
import {
  type AgentMessage,
  HubMessageSchema,
  type Inventory,
  type InventorySchema,
  silenceBound,
} from "../contract/fleet.ts";
import type { Resources, Server } from "../contract/responses.ts";
import { MAX_FRAME, TUNNEL_PATH, TUNNEL_PROTOCOL } from "../contract/tunnel.ts";
import type { WebSocketClient } from "../contract/websocket.ts";
import type { z } from "zod";
import { type ConnectionEnv, UNIX_CONNECTION } from "../server/connection.ts";
import { Tunnel } from "../server/tunnel.ts";
import { serveStream } from "../server/tunnel_http.ts";
import { CERT_FILE, KEY_FILE } from "../server/server_cert.ts";
import { join } from "node:path";

/** Events kept for the hub while it is away; older ones are dropped (and counted). */
export const MAX_QUEUED_EVENTS = 1_000;
/** Backoff between tries: from 1 s, doubling to 30 s, each with up to half of it as jitter. */
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** The inventory goes up with a heartbeat when something changed, and at least this often. */
const INVENTORY_EVERY_MS = 60_000;
/** What the hub's heartbeat interval is taken to be before its welcome says. */
const DEFAULT_HEARTBEAT_S = 10;
/** How often the heartbeat timer looks whether one is due. */
const TICK_MS = 250;

export interface FleetClientOptions {
  agent: Agent;
  serve: (req: Request, env: ConnectionEnv) => Promise<Response>;
  log: (msg: string) => void;
}

export class FleetClient {
  #generation = 0;
  #ws?: WebSocketClient;
  #wake?: () => void;
  #events: unknown[] = [];
  #dropped = 0;
  #inventoryDirty = true;
  #unsubscribe?: () => void;

  constructor(private opts: FleetClientOptions) {}

  /** Follows the enrollment: connects now if enrolled, and again whenever it changes. */
  start(): void {
    const { agent } = this.opts;
    agent.fleet.changed.push((record) => this.#restart(record));
    this.#unsubscribe = agent.events.subscribe(["lifecycle"], (event) => {
      this.#inventoryDirty = true;
      if (!agent.fleet.record()) return;
      this.#events.push(event);
      if (this.#events.length > MAX_QUEUED_EVENTS) {
        this.#events.shift();
        this.#dropped++;
      }
      this.#report();
    });
    this.#restart(agent.fleet.record());
  }

  stop(): void {
    this.#unsubscribe?.();
    this.#restart(undefined);
  }

  #report(): void {
    this.opts.agent.fleet.report({
      queued_events: this.#events.length,
      dropped_events: this.#dropped,
    });
  }

  #restart(record: FleetRecord | undefined): void {
    const gen = ++this.#generation;
    void this.#ws?.close(1000, "The agent is reconnecting").catch(() => {});
    this.#ws = undefined;
    this.#wake?.();
    if (!record) {
      this.#events = [];
      this.#dropped = 0;
      return;
    }
    void this.#loop(gen, record);
  }

  async #loop(gen: number, record: FleetRecord): Promise<void> {
    let attempt = 0;
    while (gen === this.#generation) {
      const started = Date.now();
      let error = "";
      try {
        await this.#session(gen, record);
      } catch (err) {
        error = messageOf(err);
      }
      if (gen !== this.#generation) return;
      if (Date.now() - started > BACKOFF_MAX_MS) attempt = 0;
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt++);
      const delay = base / 2 + Math.random() * base / 2;
      this.opts.agent.fleet.report({ tunnel: "connecting", last_error: error });
      if (error) this.opts.log(`fleet: ${error}; trying again in ${(delay / 1000).toFixed(1)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async #dial(record: FleetRecord): Promise<WebSocketClient> {
    // Loaded with the first tunnel: a host that is not enrolled never holds node's TLS.
    const { WebSocketClient } = await import("../contract/websocket.ts");
    const failures: string[] = [];
    const credentials = async () => {
      const root = this.opts.agent.paths.root;
      return {
        cert: await Deno.readTextFile(join(root, CERT_FILE)),
        key: await Deno.readTextFile(join(root, KEY_FILE)),
      };
    };
    for (const { url, transport } of await hubTransports(record, credentials)) {
      try {
        return await WebSocketClient.connect(() => transport.dial(), {
          path: TUNNEL_PATH,
          host: transport.host,
          maxMessageSize: MAX_FRAME,
        });
      } catch (err) {
        failures.push(`${url}: ${messageOf(err)}`);
      }
    }
    throw new Error(`Cannot open the tunnel to the hub: ${failures.join("; ")}`);
  }

  /** One connection to the hub, from dial to close. */
  async #session(gen: number, record: FleetRecord): Promise<void> {
    const ws = await this.#dial(record);
    if (gen !== this.#generation) {
      await ws.close();
      return;
    }
    this.#ws = ws;
    let heartbeatS = DEFAULT_HEARTBEAT_S;
    let lastHeard = Date.now();
    let lastInventory = 0;
    let sentUpgrade = JSON.stringify(lastUpgrade(this.opts.agent.paths.root));
    const tunnel = new Tunnel({
      send: (data) => void ws.send(data).catch(() => {}),
      close: () => void ws.close().catch(() => {}),
    }, {
      onStream: (stream, head) =>
        void serveStream(stream, head, {
          fetch: this.opts.serve,
          caller: { via: "hub", hub: record.hub_urls[0] },
          log: this.opts.log,
        }),
      onControl: (text) => {
        lastHeard = Date.now();
        try {
          const msg = HubMessageSchema.parse(JSON.parse(text));
          if (msg.type === "welcome") heartbeatS = msg.heartbeat_seconds;
        } catch {
          tunnel.close("A malformed message from the hub");
        }
      },
    });
    const send = (msg: AgentMessage) => tunnel.control(msg);
    send({ type: "hello", protocol: TUNNEL_PROTOCOL, inventory: await this.inventory() });
    lastInventory = Date.now();
    this.#inventoryDirty = false;
    this.opts.agent.fleet.report({ tunnel: "connected", last_error: "" });
    this.opts.log(`fleet: tunnel to ${record.hub_urls[0]} open`);
    this.#flush(send);
    let beating = false;
    let lastBeat = Date.now();
    const timer = setInterval(async () => {
      if (beating) return;
      if (Date.now() - lastHeard > silenceBound(heartbeatS)) {
        tunnel.close("No heartbeat from the hub");
        void ws.close(1000, "No heartbeat").catch(() => {});
        return;
      }
      if (Date.now() - lastBeat < heartbeatS * 1000) return;
      beating = true;
      lastBeat = Date.now();
      try {
        // An upgrade's result is written after the new daemon started: it goes up when it shows.
        const upgrade = JSON.stringify(lastUpgrade(this.opts.agent.paths.root));
        const due = this.#inventoryDirty || upgrade !== sentUpgrade ||
          Date.now() - lastInventory > INVENTORY_EVERY_MS;
        sentUpgrade = upgrade;
        this.#inventoryDirty = false;
        const inventory = due ? await this.inventory() : undefined;
        if (inventory) lastInventory = Date.now();
        send({ type: "heartbeat", inventory });
        this.#flush(send);
      } catch (err) {
        this.opts.log(`fleet: heartbeat: ${messageOf(err)}`);
      } finally {
        beating = false;
      }
    }, TICK_MS);
    try {
      for await (const msg of ws) tunnel.receive(msg.data);
      const info = await ws.closed;
      throw new Error(
        `The hub closed the tunnel (${info.code}${info.reason ? `: ${info.reason}` : ""})`,
      );
    } finally {
      clearInterval(timer);
      tunnel.close("The tunnel's connection closed");
      if (this.#ws === ws) this.#ws = undefined;
    }
  }

  /** Sends the queued events up (they stay queued if the tunnel cannot take them). */
  #flush(send: (msg: AgentMessage) => void): void {
    if (this.#events.length === 0 && this.#dropped === 0) return;
    const events = this.#events.splice(0, 1_000);
    send({ type: "events", events, dropped: this.#dropped });
    this.#dropped = 0;
    this.#report();
  }

  /** What the hub shows of this host, read from the daemon's own API. */
  async inventory(): Promise<Inventory> {
    const get = async <T>(path: string): Promise<T> => {
      const resp = await this.opts.serve(new Request(`https://localhost${path}`), {
        connection: UNIX_CONNECTION,
      });
      const body = await resp.json();
      if (!resp.ok) throw new Error(`${path}: ${body?.error ?? resp.status}`);
      return body.metadata as T;
    };
    const server = await get<Server>("/1.0");
    const resources = await get<Resources>("/1.0/resources");
    const instances = await get<
      { name: string; type: string; status: string; state?: { network?: unknown } }[]
    >("/1.0/instances?recursion=2");
    const env = server.environment;
    const qemu = env.instance_drivers?.["qemu"];
    const install = installInfo();
    const inventory: z.infer<typeof InventorySchema> = {
      version: env.server_version,
      build: install?.build.slice(0, 64) ?? "",
      upgradable: install !== undefined,
      last_upgrade: lastUpgrade(this.opts.agent.paths.root),
      kernel: `${env.kernel} ${env.kernel_version}`.slice(0, 128),
      architecture: env.kernel_architecture,
      hostname: env.server_name,
      cpus: resources.cpu.total,
      memory_bytes: resources.memory.total,
      kvm: qemu?.["kvm"] === "usable",
      drivers: resources.instance_drivers.map((d) => ({
        name: d.name,
        version: d.version.slice(0, 64),
        available: d.available,
      })),
      instances: instances.slice(0, 10_000).map((i) => ({
        name: i.name,
        type: i.type,
        status: i.status,
        addresses: addressesOf(i.state?.network),
      })),
    };
    return inventory;
  }
}

/** The global addresses of an instance's state (`state.network`), loopback left out. */
function addressesOf(network: unknown): string[] {
  const out: string[] = [];
  if (!network || typeof network !== "object") return out;
  for (const [name, nic] of Object.entries(network as Record<string, unknown>)) {
    if (name === "lo") continue;
    const addrs = (nic as { addresses?: { address?: unknown; scope?: unknown }[] })?.addresses;
    for (const a of Array.isArray(addrs) ? addrs : []) {
      if (typeof a?.address === "string" && a.scope !== "link" && out.length < 64) {
        out.push(a.address);
      }
    }
  }
  return out;
}
