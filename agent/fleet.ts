/**
 * This host's place in a fleet: enrolling with a hub (a join token exchanged, over TLS with the
 * daemon's own certificate, for the hub's record of this host), the record kept in the store, and
 * how the tunnel fares (the daemon's tunnel client reports it here). The hub is pinned from first
 * contact: its certificate must have the token's fingerprint, and only that certificate is trusted
 * from then on.
 */
import { hostname } from "node:os";
import { ApiClient, ApiError } from "../contract/client.ts";
import { BadRequest, Conflict, Forbidden } from "../contract/errors.ts";
import {
  decodeJoinToken,
  ENROLL_PATH,
  type EnrollResponse,
  type FleetJoin,
  type FleetMembership,
  HostNameSchema,
} from "../contract/fleet.ts";
import type { TlsTransport } from "../contract/tls_transport.ts";
import { VERSION } from "../contract/version.ts";
import type { FleetRecord, Store } from "./store.ts";

export interface FleetOptions {
  store: Store;
  /** The daemon's certificate and key (PEM): its credential with the hub. */
  credentials: () => Promise<{ cert: string; key: string }>;
  log: (msg: string) => void;
}

/** What the tunnel client reports. */
export interface TunnelReport {
  tunnel: "connected" | "connecting" | "none";
  last_error: string;
  queued_events: number;
  dropped_events: number;
}

/**
 * A TLS transport to each of the hub's URLs, in order: this host's certificate as the client's,
 * the hub's pinned one as the only one trusted. (node's TLS is loaded at the first call: a host
 * that is not enrolled never holds it.)
 */
export async function hubTransports(
  record: FleetRecord,
  credentials: () => Promise<{ cert: string; key: string }>,
): Promise<{ url: string; transport: TlsTransport }[]> {
  const { TlsTransport } = await import("../contract/tls_transport.ts");
  const { cert, key } = await credentials();
  return record.hub_urls.map((url) => ({
    url,
    transport: new TlsTransport({
      name: "hub",
      url,
      cert,
      key,
      serverCert: record.hub_certificate,
    }),
  }));
}

/** The default name of this host in a fleet: its host name's first label, when it is one. */
export function defaultHostName(): string {
  const first = hostname().split(".")[0];
  return HostNameSchema.safeParse(first).success ? first : "host";
}

export class FleetMembershipManager {
  #report: TunnelReport = { tunnel: "none", last_error: "", queued_events: 0, dropped_events: 0 };
  /** Called when the record changes (enrolled, left): the tunnel client follows it. */
  readonly changed: ((record: FleetRecord | undefined) => void)[] = [];
  #enrolling = false;

  constructor(private opts: FleetOptions) {}

  record(): FleetRecord | undefined {
    return this.opts.store.fleet();
  }

  report(r: Partial<TunnelReport>): void {
    this.#report = { ...this.#report, ...r };
  }

  view(): FleetMembership {
    const r = this.record();
    return {
      enrolled: r !== undefined,
      name: r?.name ?? "",
      hub: r?.hub_urls ?? [],
      labels: r?.labels ?? {},
      enrolled_at: r?.enrolled_at ?? "",
      ...this.#report,
      tunnel: r ? this.#report.tunnel : "none",
    };
  }

  /** Enrolls with the hub a join token names; replaces any earlier enrollment. */
  async enroll(req: FleetJoin): Promise<FleetMembership> {
    let token;
    try {
      token = decodeJoinToken(req.token);
    } catch (err) {
      throw new BadRequest((err as Error).message);
    }
    if (token.expires_at !== "" && Date.parse(token.expires_at) <= Date.now()) {
      throw new Forbidden(`The join token expired at ${token.expires_at}: ask the hub for another`);
    }
    if (this.#enrolling) throw new Conflict("An enrollment is already under way");
    this.#enrolling = true;
    try {
      const name = req.name ?? defaultHostName();
      // node's TLS is loaded only by a host that enrolls.
      const { probeServerCert, TlsTransport } = await import("../contract/tls_transport.ts");
      const { cert, key } = await this.opts.credentials();
      const failures: string[] = [];
      const urls = [...new Set([...(req.url ? [req.url.replace(/\/+$/, "")] : []), ...token.hub])];
      for (const url of urls) {
        let probed;
        try {
          probed = await probeServerCert(url);
        } catch (err) {
          failures.push((err as Error).message);
          continue;
        }
        if (probed.fingerprint !== token.fingerprint) {
          throw new Forbidden(
            `The hub at ${url} presented a certificate other than the token's (${
              probed.fingerprint.slice(0, 12)
            }, expected ${token.fingerprint.slice(0, 12)}): not enrolling`,
          );
        }
        const client = new ApiClient(
          new TlsTransport({ name: "hub", url, cert, key, serverCert: probed.certificate }),
        );
        let answer: EnrollResponse;
        try {
          const env = await client.request<EnrollResponse>("POST", ENROLL_PATH, {
            body: { secret: token.secret, name, version: VERSION },
          });
          answer = env.metadata as EnrollResponse;
        } catch (err) {
          if (err instanceof ApiError && err.status === 409) throw new Conflict(err.message);
          if (err instanceof ApiError && err.status < 500) throw new Forbidden(err.message);
          failures.push((err as Error).message);
          continue;
        } finally {
          client.close();
        }
        const record: FleetRecord = {
          hub_urls: [url, ...urls.filter((u) => u !== url)],
          hub_certificate: probed.certificate,
          name: answer.name,
          labels: answer.labels,
          enrolled_at: new Date().toISOString(),
        };
        this.opts.store.setFleet(record);
        this.#report = {
          tunnel: "connecting",
          last_error: "",
          queued_events: 0,
          dropped_events: 0,
        };
        this.opts.log(`fleet: enrolled as "${record.name}" with the hub at ${url}`);
        for (const fn of this.changed) fn(record);
        return this.view();
      }
      throw new BadRequest(`Cannot reach the hub: ${failures.join("; ")}`);
    } finally {
      this.#enrolling = false;
    }
  }

  /** Leaves the fleet: the tunnel closes, the record goes (the hub keeps its own until removed). */
  leave(): void {
    if (!this.record()) throw new BadRequest("This host is not enrolled with a hub");
    this.opts.store.setFleet(undefined);
    this.#report = { tunnel: "none", last_error: "", queued_events: 0, dropped_events: 0 };
    for (const fn of this.changed) fn(undefined);
  }
}
