/**
 * The tunnels this hub holds, one per connected host (the model is Nomad's: the server keeps the
 * connection each client dialed and calls the client through it). A session reads the agent's
 * control messages (hello, heartbeats with inventory, events), sends the hub's heartbeats, and
 * ends a tunnel that has been silent longer than the bound: a host is never shown online for
 * longer than 2 × heartbeat + grace after it last spoke.
 */
import {
  type AgentMessage,
  AgentMessageSchema,
  type HubMessage,
  type Inventory,
} from "../contract/fleet.ts";
import { TUNNEL_PROTOCOL } from "../contract/tunnel.ts";
import { silenceBound } from "../contract/fleet.ts";

export { silenceBound };
import { Tunnel, type TunnelCarrier } from "../server/tunnel.ts";

export interface SessionEvents {
  /** The agent said hello: the tunnel is in service. */
  opened(name: string, inventory: Inventory): Promise<void>;
  heartbeat(name: string, inventory?: Inventory): Promise<void>;
  events(name: string, events: unknown[], dropped: number): Promise<void>;
  closed(session: Session, reason: string): Promise<void>;
}

export class Session {
  readonly tunnel: Tunnel;
  lastHeard = Date.now();
  #hello = false;

  constructor(
    readonly name: string,
    carrier: TunnelCarrier,
    private heartbeatSeconds: number,
    private events: SessionEvents,
    private log: (msg: string) => void,
  ) {
    this.tunnel = new Tunnel(carrier, {
      onControl: (text) => void this.#control(text).catch((err) => this.#fail(err)),
      onClose: (reason) => void this.events.closed(this, reason).catch(() => {}),
    });
    this.send({ type: "welcome", name, heartbeat_seconds: heartbeatSeconds });
  }

  send(message: HubMessage): void {
    this.tunnel.control(message);
  }

  /** Whether the agent has been silent past the bound (then the tunnel is closed). */
  expired(now: number): boolean {
    return now - this.lastHeard > silenceBound(this.heartbeatSeconds);
  }

  #fail(err: unknown): void {
    this.log(`hub: host ${this.name}: ${err instanceof Error ? err.message : String(err)}`);
    this.tunnel.close("The hub could not record the host's message");
  }

  async #control(text: string): Promise<void> {
    this.lastHeard = Date.now();
    let msg: AgentMessage;
    try {
      const r = AgentMessageSchema.safeParse(JSON.parse(text));
      if (!r.success) throw new Error(r.error.issues[0]?.message ?? "invalid");
      msg = r.data;
    } catch (err) {
      this.tunnel.close(`A malformed control message: ${(err as Error).message}`);
      return;
    }
    if (msg.type === "hello") {
      if (msg.protocol !== TUNNEL_PROTOCOL) {
        this.tunnel.close(`Tunnel protocol ${msg.protocol} is not ${TUNNEL_PROTOCOL}: upgrade`);
        return;
      }
      this.#hello = true;
      await this.events.opened(this.name, msg.inventory);
    } else if (!this.#hello) {
      this.tunnel.close("The agent spoke before its hello");
    } else if (msg.type === "heartbeat") {
      await this.events.heartbeat(this.name, msg.inventory);
    } else {
      await this.events.events(this.name, msg.events, msg.dropped);
    }
  }
}

/** The sessions of this hub, by host name; a host that connects again replaces its old one. */
export class Sessions {
  #byName = new Map<string, Session>();

  get(name: string): Session | undefined {
    const s = this.#byName.get(name);
    return s && !s.tunnel.closed ? s : undefined;
  }

  add(session: Session): void {
    const old = this.#byName.get(session.name);
    this.#byName.set(session.name, session);
    old?.tunnel.close("The host connected again");
  }

  /** Forgets a closed session (a newer one for the host stays). */
  remove(session: Session): void {
    if (this.#byName.get(session.name) === session) this.#byName.delete(session.name);
  }

  /** Sends each live session a heartbeat; closes those silent past the bound. */
  sweep(now = Date.now()): void {
    for (const s of [...this.#byName.values()]) {
      if (s.tunnel.closed) this.remove(s);
      else if (s.expired(now)) s.tunnel.close("No heartbeat from the host");
      else s.send({ type: "heartbeat" });
    }
  }

  closeAll(reason: string): void {
    for (const s of [...this.#byName.values()]) s.tunnel.close(reason);
    this.#byName.clear();
  }
}
