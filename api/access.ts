/**
 * Who may call what. The unix socket is trusted as a whole (its file mode is the check). Over
 * HTTPS the caller is whoever holds the private key of the certificate its TLS client presented,
 * trusted only by an exact match in the trust store (`agent/trust.ts`), checked on every request:
 * a certificate removed from the store is refused at once, even on a connection already open.
 */
import type { Context } from "hono";
import type { Agent } from "../agent/agent.ts";
import type { CertificateRecord } from "../agent/store.ts";
import { Forbidden, TooManyRequests } from "../contract/errors.ts";
import { type Caller, connectionOf } from "../server/connection.ts";
import { isLoopback } from "../server/auth_failures.ts";
import type { Guard, Route } from "./route_table.ts";

/** What the server knows of a caller. */
export type Identity =
  | { kind: "unix" }
  | { kind: "hub"; hub: string }
  | { kind: "untrusted"; address: string }
  | { kind: "certificate"; address: string; certificate: CertificateRecord };

/** Who a caller is: the unix socket, a trusted certificate, or an untrusted peer. */
export function identify(agent: Agent, caller: Caller): Identity {
  if (caller.via === "unix") return { kind: "unix" };
  if (caller.via === "hub") return { kind: "hub", hub: caller.hub };
  const certificate = caller.certificate && agent.trust.identify(caller.certificate);
  return certificate
    ? { kind: "certificate", address: caller.address, certificate }
    : { kind: "untrusted", address: caller.address };
}

/** Identities already worked out, by request: the guard, a route and the audit ask alike. */
const identities = new WeakMap<Request, Identity>();

/**
 * The identity of the caller of the request being served, worked out once per request (a hash
 * of its certificate and a store lookup).
 */
export function identityOf(agent: Agent, c: Context): Identity {
  let id = identities.get(c.req.raw);
  if (!id) {
    id = identify(agent, connectionOf(c).caller);
    identities.set(c.req.raw, id);
  }
  return id;
}

/**
 * Whether an identity is a trusted client: the unix socket, the hub this host enrolled with
 * (through the tunnel it dialed itself), or a `client` certificate.
 */
export function isTrustedClient(id: Identity): boolean {
  return id.kind === "unix" || id.kind === "hub" ||
    (id.kind === "certificate" && id.certificate.type === "client");
}

/** Whether `id` may call a route declared with `route`'s access level; else why not. */
export function refusal(
  agent: Agent,
  id: Identity,
  route: Pick<Route, "access" | "method">,
): string | undefined {
  if (
    id.kind === "unix" || id.kind === "hub" || route.access === "untrusted" ||
    route.access === "secret"
  ) {
    return undefined;
  }
  if (route.access === "metrics") {
    if (id.kind === "certificate") return undefined;
    return agent.serverConfig()["core.metrics_authentication"] === "false"
      ? undefined
      : "not authorized";
  }
  if (!isTrustedClient(id) || id.kind !== "certificate") return "not authorized";
  const cert = id.certificate;
  if (!cert.restricted) return undefined;
  if (route.access === "admin") return "Certificate is restricted";
  if (route.method !== "GET" && !cert.projects.includes("default")) {
    return 'Certificate is restricted to reading: it has no write access to project "default"';
  }
  return undefined;
}

/** The guard every route is registered behind. */
export function accessGuard(agent: Agent): Guard {
  return (c, route) => {
    const id = identityOf(agent, c);
    if (id.kind === "untrusted" && !isLoopback(id.address)) {
      const wait = agent.authFailures.heldOff(id.address);
      if (wait > 0) {
        throw new TooManyRequests(
          `Too many failed authentications from ${id.address}: try again in ${wait} s`,
        );
      }
    }
    const why = refusal(agent, id, route);
    if (why) throw new Forbidden(why);
  };
}

/** How the audit log names a caller. */
export function auditName(id: Identity): string {
  if (id.kind === "unix") return "unix";
  if (id.kind === "hub") return `hub ${id.hub}`;
  if (id.kind === "certificate") return id.certificate.fingerprint;
  return `untrusted ${id.address}`;
}

/**
 * Runs after every request: a mutating call goes to the audit log, and a refusal of an untrusted
 * caller counts against its address.
 */
export function afterRequest(agent: Agent, c: Context): void {
  const method = c.req.method;
  const status = c.res.status;
  const mutating = method !== "GET" && method !== "HEAD" && method !== "OPTIONS";
  if (!mutating && status !== 403) return;
  const id = identityOf(agent, c);
  if (status === 403 && id.kind === "untrusted" && !isLoopback(id.address)) {
    agent.authFailures.fail(id.address);
  }
  if (mutating) agent.audit.record({ who: auditName(id), method, path: c.req.path, status });
}
