/**
 * The hub's core: join tokens, enrollment, the hosts and their status, and requests relayed to a
 * host through its tunnel. Status is worked out from the store alone (which hub holds the tunnel,
 * when the host last spoke), so every hub on a shared database shows the same fleet.
 */
import { hashSecret, newId, newSecret } from "./secrets.ts";
import { createHash, X509Certificate } from "node:crypto";
import {
  type CreatedToken,
  encodeJoinToken,
  type EnrollRequest,
  type EnrollResponse,
  type FleetHost,
  type Inventory,
  type Labels,
  matchesLabels,
  type Token,
  type TokenCreate,
  TokenCreateSchema,
  type UpgradeStart,
} from "../contract/fleet.ts";
import { BadRequest, Conflict, Forbidden, NotFound } from "../contract/errors.ts";
import { derToPem, fingerprintOfDer } from "../contract/tls_transport.ts";
import type { Connection } from "../server/connection.ts";
import { relayRequest } from "../server/tunnel_http.ts";
import type { TunnelCarrier } from "../server/tunnel.ts";
import type { HostEvent, HostRecord, HubStore, TokenRecord } from "./store.ts";
import { Session, Sessions, silenceBound } from "./sessions.ts";
import { mergeMetrics } from "./metrics.ts";
import { Admins } from "./admins.ts";
import { readLimited } from "../server/body.ts";

export interface FleetOptions {
  store: HubStore;
  /** This hub's identity in the store: the URL hosts reach it at. */
  id: string;
  /** The URLs a join token names. */
  urls: string[];
  /** The hub certificate (PEM). */
  certificate: string;
  heartbeatSeconds: number;
  log: (msg: string) => void;
}

/** How long the hub waits for one host's metrics. */
const METRICS_TIMEOUT_MS = 10_000;
/** The most of one host's metrics the hub reads. */
const MAX_HOST_METRICS = 16 * 2 ** 20;

/** Join tokens usable at once (used-up and expired ones are pruned first). */
export const MAX_JOIN_TOKENS = 1_000;

/** The largest event the hub keeps whole (JSON characters). */
export const MAX_EVENT_BYTES = 16 * 1024;

/** Events kept per host (the newest). */
export const MAX_HOST_EVENTS = 500;

/** A host's events as the store keeps them, with a note first for any it had to drop. */
function eventsOf(events: unknown[], dropped: number): HostEvent[] {
  const out: HostEvent[] = [];
  if (dropped > 0) {
    out.push({
      timestamp: new Date().toISOString(),
      type: "dropped",
      event: { dropped, message: `${dropped} events were dropped while the hub was away` },
    });
  }
  for (const e of events) {
    const o = (e && typeof e === "object" ? e : {}) as { timestamp?: unknown; type?: unknown };
    out.push({
      timestamp: typeof o.timestamp === "string"
        ? o.timestamp.slice(0, 64)
        : new Date().toISOString(),
      type: typeof o.type === "string" ? o.type.slice(0, 32) : "unknown",
      // A host's own events are small; one larger is kept as a note, so the hub's table (and the
      // dashboard that reads it) stays bounded whatever a host sends.
      event: JSON.stringify(e).length <= MAX_EVENT_BYTES
        ? e
        : { truncated: true, message: `An event of more than ${MAX_EVENT_BYTES} bytes` },
    });
  }
  return out;
}

const UNIT_MS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** `90s`, `30m`, `1h`, `7d`, `2w` in milliseconds (at most a year), or undefined. */
export function durationMs(text: string): number | undefined {
  const m = /^(\d{1,6})([smhdw])$/.exec(text.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNIT_MS[m[2]];
  return ms > 0 && ms <= 366 * UNIT_MS.d ? ms : undefined;
}

/** `curl --pinnedpubkey`'s form of a certificate's public key: sha256// and base64. */
export function publicKeyPin(pem: string): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return `sha256//${createHash("sha256").update(spki).digest("base64")}`;
}

function tokenView(t: TokenRecord): Token {
  return {
    id: t.id,
    description: t.description,
    labels: t.labels,
    uses_left: t.uses_left,
    expires_at: t.expires_at,
    created_at: t.created_at,
  };
}

export class Fleet {
  readonly sessions = new Sessions();
  readonly fingerprint: string;
  /** The hub's remote administrators. */
  readonly admins: Admins;
  #store: HubStore;
  #listeners = new Set<() => void>();

  constructor(private opts: FleetOptions) {
    this.#store = opts.store;
    this.fingerprint = fingerprintOfDer(new X509Certificate(opts.certificate).raw);
    this.admins = new Admins({
      store: opts.store,
      fingerprint: this.fingerprint,
      urls: opts.urls,
      durationMs,
    });
  }

  /** The URLs hosts reach the hub at. */
  get urls(): string[] {
    return this.opts.urls;
  }

  /** The hub's public key as `curl --pinnedpubkey` takes it. */
  get publicKeyPin(): string {
    return publicKeyPin(this.opts.certificate);
  }

  get heartbeatSeconds(): number {
    return this.opts.heartbeatSeconds;
  }

  // --- join tokens ---

  async createToken(body: TokenCreate): Promise<CreatedToken> {
    const req = TokenCreateSchema.parse(body);
    if (this.opts.urls.length === 0) {
      throw new BadRequest(
        "The hub has no address hosts can reach: start it with --listen or --url",
      );
    }
    const now = new Date();
    let expires = "";
    if (req.expires !== "" && req.expires !== "never") {
      const ms = durationMs(req.expires);
      if (ms === undefined) {
        throw new BadRequest(
          `Invalid expiry "${req.expires}": use a number and a unit s, m, h, d or w (30m, 1h, 7d)`,
        );
      }
      expires = new Date(now.getTime() + ms).toISOString();
    }
    if ((await this.listTokens()).length >= MAX_JOIN_TOKENS) {
      throw new BadRequest(
        `${MAX_JOIN_TOKENS} join tokens are waiting: revoke some ("outpost hub token revoke")`,
      );
    }
    const secret = newSecret();
    const record: TokenRecord = {
      id: newId(),
      hash: hashSecret(secret),
      description: req.description,
      labels: req.labels,
      uses_left: req.uses,
      expires_at: expires,
      created_at: now.toISOString(),
    };
    await this.#store.putToken(record);
    const token = encodeJoinToken({
      hub: this.opts.urls,
      fingerprint: this.fingerprint,
      secret,
      expires_at: expires,
    });
    const url = this.opts.urls[0];
    return {
      ...tokenView(record),
      token,
      install_command: `curl -fsSLk --pinnedpubkey '${
        publicKeyPin(this.opts.certificate)
      }' ${url}/install.sh | sh -s -- --token ${token}`,
    };
  }

  async listTokens(): Promise<Token[]> {
    await this.#store.pruneTokens(new Date().toISOString());
    return (await this.#store.listTokens()).map(tokenView);
  }

  async revokeToken(id: string): Promise<void> {
    if (!await this.#store.deleteToken(id)) throw new NotFound(`Join token "${id}" not found`);
  }

  // --- enrollment ---

  /** Exchanges a join token for a place in the fleet: `der` (the agent's certificate) is its credential. */
  async enroll(der: Uint8Array | undefined, req: EnrollRequest): Promise<EnrollResponse> {
    if (!der) throw new Forbidden("Enrollment needs the agent's client certificate");
    const certificate = derToPem(der);
    const r = await this.#store.enroll(hashSecret(req.secret), new Date().toISOString(), {
      name: req.name,
      fingerprint: fingerprintOfDer(der),
      certificate,
    });
    if (!r.ok && r.why === "token") {
      throw new Forbidden("The join token is invalid, expired, revoked or used up");
    }
    if (!r.ok) {
      throw new Conflict(`Another host is enrolled as "${req.name}": enroll with another --name`);
    }
    this.opts.log(`hub: host ${req.name} enrolled`);
    return { name: req.name, labels: r.labels };
  }

  /** The enrolled host a certificate stands for, or undefined. */
  hostOf(der: Uint8Array | undefined): Promise<HostRecord | undefined> {
    if (!der) return Promise.resolve(undefined);
    return this.#store.hostByFingerprint(fingerprintOfDer(der));
  }

  // --- tunnels ---

  /** A host's tunnel websocket is open: serve it. */
  attach(host: HostRecord, carrier: TunnelCarrier): Session {
    const session = new Session(host.name, carrier, this.opts.heartbeatSeconds, {
      opened: async (name, inventory) => {
        await this.#store.setConnection(name, this.opts.id, new Date().toISOString());
        await this.#store.touch(name, new Date().toISOString(), inventory);
        this.opts.log(`hub: host ${name} connected`);
        this.#changed();
      },
      heartbeat: async (name, inventory) => {
        await this.#store.touch(name, new Date().toISOString(), inventory);
        if (inventory) this.#changed();
      },
      events: async (name, events, dropped) => {
        await this.#store.addEvents(name, eventsOf(events, dropped), MAX_HOST_EVENTS);
        this.#changed();
      },
      closed: async (s, reason) => {
        this.sessions.remove(s);
        if (this.sessions.get(s.name)) return; // it connected again meanwhile
        await this.#store.setConnection(s.name, "", new Date(s.lastHeard).toISOString());
        this.opts.log(`hub: host ${s.name} disconnected: ${reason}`);
        this.#changed();
      },
    }, this.opts.log);
    this.sessions.add(session);
    return session;
  }

  // --- hosts ---

  #view(h: HostRecord, now: number): FleetHost {
    const seen = h.last_seen ? Date.parse(h.last_seen) : 0;
    const online = h.hub !== "" && now - seen <= silenceBound(this.opts.heartbeatSeconds);
    return {
      name: h.name,
      status: online ? "online" : "offline",
      labels: h.labels,
      fingerprint: h.fingerprint,
      enrolled_at: h.enrolled_at,
      last_seen: h.last_seen,
      hub: online ? h.hub : "",
      inventory: h.inventory,
    };
  }

  async hosts(): Promise<FleetHost[]> {
    const now = Date.now();
    return (await this.#store.listHosts()).map((h) => this.#view(h, now));
  }

  async host(name: string): Promise<FleetHost> {
    const h = await this.#store.getHost(name);
    if (!h) throw new NotFound(`Host "${name}" not found`);
    return this.#view(h, Date.now());
  }

  async removeHost(name: string): Promise<void> {
    if (!await this.#store.deleteHost(name)) throw new NotFound(`Host "${name}" not found`);
    this.sessions.get(name)?.tunnel.close("The host was removed from the fleet");
  }

  /** A client's request relayed to `path` on a host's own API. */
  async relay(name: string, req: Request, path: string, connection: Connection): Promise<Response> {
    let session = this.sessions.get(name);
    if (session?.expired(Date.now())) {
      // Silent past the bound: shown offline already, so it is not used (the sweep ends it).
      session.tunnel.close("No heartbeat from the host");
      session = undefined;
    }
    if (!session) {
      const host = await this.host(name);
      if (host.status === "online" && host.hub !== this.opts.id) {
        throw new Conflict(`Host "${name}" is connected to the hub at ${host.hub}: ask that hub`);
      }
      throw new Conflict(
        `Host "${name}" is offline (last seen ${
          host.last_seen || "never"
        }): it cannot be reached until it reconnects`,
      );
    }
    return await relayRequest(session.tunnel, req, path, connection);
  }

  /** A request the hub itself makes to `path` on a host's own API. */
  get(name: string, path: string, signal?: AbortSignal, init: RequestInit = {}): Promise<Response> {
    const refuse = () => {
      throw new TypeError("The hub's own requests are never upgraded");
    };
    return this.relay(name, new Request(`https://localhost${path}`, { ...init, signal }), path, {
      caller: { via: "unix" },
      upgradeWebSocket: refuse,
    });
  }

  /** Starts or stops an instance on a host and waits for it (the dashboard's buttons). */
  async changeState(host: string, instance: string, action: "start" | "stop"): Promise<void> {
    const json = async (resp: Response) => {
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok || body.type === "error") {
        throw new Conflict(`${action} ${instance} on ${host}: ${body.error ?? resp.status}`);
      }
      return body;
    };
    const started = await json(
      await this.get(host, `/1.0/instances/${encodeURIComponent(instance)}/state`, undefined, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action, timeout: 30 }),
      }),
    );
    const id = started.metadata?.id;
    if (typeof id !== "string") return;
    const done = await json(
      await this.get(host, `/1.0/operations/${encodeURIComponent(id)}/wait?timeout=60`),
    );
    if (done.metadata?.status_code !== 200) {
      throw new Conflict(`${action} ${instance} on ${host}: ${done.metadata?.err ?? "failed"}`);
    }
  }

  /**
   * Asks every online host this hub holds that matches `selector` to install build `sha256` (the
   * hub's own agent program): a result per host, answered as soon as each has started.
   */
  async upgrade(selector: Labels, sha256: string): Promise<UpgradeStart[]> {
    const hosts = (await this.hosts()).filter((h) => matchesLabels(h.labels, selector));
    return await Promise.all(hosts.map(async (h): Promise<UpgradeStart> => {
      if (h.status !== "online") return { host: h.name, status: "failed", message: "offline" };
      if (h.inventory?.build === sha256) {
        return { host: h.name, status: "current", message: "already on this build" };
      }
      try {
        const resp = await this.get(h.name, "/1.0/fleet/upgrade", AbortSignal.timeout(120_000), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ sha256 }),
        });
        const body = await resp.json().catch(() => ({}));
        if (!resp.ok) {
          return { host: h.name, status: "failed", message: String(body.error ?? resp.status) };
        }
        return {
          host: h.name,
          status: "started",
          message: `from ${body.metadata?.from || "a checkout"}`,
        };
      } catch (err) {
        return { host: h.name, status: "failed", message: (err as Error).message };
      }
    }));
  }

  /** Calls `fn` whenever a host's status, inventory or events change; returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) {
      try {
        fn();
      } catch { /* a listener's failure is its own */ }
    }
  }

  /** Every online host's `/1.0/metrics`, merged with a `host` label (hosts that fail are left out). */
  async metrics(): Promise<string> {
    const online = (await this.hosts()).filter((h) =>
      h.status === "online" && this.sessions.get(h.name)
    );
    const texts = await Promise.all(online.map(async (h) => {
      try {
        const resp = await this.get(
          h.name,
          "/1.0/metrics",
          AbortSignal.timeout(METRICS_TIMEOUT_MS),
        );
        if (!resp.ok) {
          await resp.body?.cancel();
          return undefined;
        }
        return {
          host: h.name,
          text: new TextDecoder().decode(await readLimited(resp, MAX_HOST_METRICS)),
        };
      } catch (err) {
        this.opts.log(`hub: metrics of ${h.name}: ${(err as Error).message}`);
        return undefined;
      }
    }));
    return mergeMetrics(texts.filter((t) => t !== undefined));
  }

  /** A host's events, oldest first. */
  async events(name: string): Promise<HostEvent[]> {
    await this.host(name);
    return await this.#store.listEvents(name);
  }

  /** Inventory of a host, from the store. */
  async inventory(name: string): Promise<Inventory | null> {
    return (await this.host(name)).inventory;
  }
}
