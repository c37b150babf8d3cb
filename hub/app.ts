/**
 * The hub's API (`/fleet/v1`), in the Incus envelope: who may call what is decided here, per
 * route, from the connection (the unix socket in the state dir is the hub's admin; over HTTPS an
 * enrolled host's certificate may open its tunnel, and anyone may enroll with a join token).
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import {
  EnrollRequestSchema,
  FLEET_API,
  type FleetHost,
  FleetUpgradeRequestSchema,
  matchesLabels,
  parseLabels,
  TokenCreateSchema,
} from "../contract/fleet.ts";
import { errorBody } from "../contract/responses.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../contract/metrics.ts";
import { TUNNEL_PATH } from "../contract/tunnel.ts";
import { VERSION } from "../contract/version.ts";
import { BadRequest, Forbidden, TooManyRequests, Unavailable } from "../contract/errors.ts";
import { AuthFailures, isLoopback } from "../server/auth_failures.ts";
import { parseBody } from "../server/body.ts";
import { type Caller, connectionOf } from "../server/connection.ts";
import { json, sync, toHttpError } from "../server/envelope.ts";
import type { Fleet } from "./fleet.ts";
import { type AgentProgram, installScript } from "./agent_program.ts";
import { DashboardSessions, mountDashboard } from "./dashboard.tsx";

/** Who the caller is to the hub. */
type Role = "admin" | "host" | "untrusted";

async function roleOf(fleet: Fleet, caller: Caller): Promise<Role> {
  if (caller.via === "unix") return "admin";
  if (caller.via !== "https" || !caller.certificate) return "untrusted";
  if (await fleet.admins.identify(caller.certificate)) return "admin";
  if (await fleet.hostOf(caller.certificate)) return "host";
  return "untrusted";
}

/** `POST /1.0/certificates` as the Incus and outpost clients send it to redeem a trust token. */
const RedeemSchema = z.object({
  trust_token: z.string().max(8192).optional(),
  password: z.string().max(8192).optional(),
});

const ClientTokenSchema = z.strictObject({
  name: z.string().max(64),
  expires: z.string().max(32).default("1d"),
});

function requireAdmin(role: Role): void {
  if (role !== "admin") throw new Forbidden("Only the hub's administrators may do this");
}

/** `?label=k=v` (repeated) as a label selector. */
function labelSelector(c: Context): Record<string, string> {
  try {
    return parseLabels(c.req.queries("label") ?? []);
  } catch (err) {
    throw new BadRequest((err as Error).message);
  }
}

export interface HubAppOptions {
  fleet: Fleet;
  /** The agent program hosts install and upgrade to (none: installs and upgrades are refused). */
  program?: AgentProgram;
  log: (msg: string) => void;
}

/** `https://` and the Host a client reached the hub by, when it is a plain host[:port]. */
function reachedAs(c: Context): string | undefined {
  const host = c.req.header("host") ?? "";
  const ok = /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$/.test(host) ||
    /^\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?$/.test(host);
  return ok ? `https://${host}` : undefined;
}

export function createHubApp({ fleet, program: packed, log }: HubAppOptions): Hono {
  const app = new Hono();
  const program = (): AgentProgram => {
    if (!packed) {
      throw new Unavailable(
        "This hub has no agent program to serve (see its log): install hosts from a checkout",
      );
    }
    return packed;
  };
  // An address refused 30 times in a minute is held off (429) until the minute is over, as on
  // the daemon; loopback never is, nor a caller with a certificate the hub knows.
  const failures = new AuthFailures();
  app.use(async (c, next) => {
    const caller = connectionOf(c).caller;
    const stranger = caller.via === "https" && !isLoopback(caller.address) &&
      await roleOf(fleet, caller) === "untrusted";
    if (stranger) {
      const wait = failures.heldOff(caller.address);
      if (wait > 0) {
        throw new TooManyRequests(
          `Too many refused requests from ${caller.address}: try again in ${wait} s`,
        );
      }
    }
    await next();
    if (stranger && c.res.status === 403) failures.fail(caller.address);
    if (c.req.method !== "GET") {
      log(`hub: ${c.req.method} ${c.req.path.slice(0, 200)} ${c.res.status}`);
    }
  });

  app.get(FLEET_API, async (c) => {
    const role = await roleOf(fleet, connectionOf(c).caller);
    return sync(c, {
      server: "outpost-hub",
      version: VERSION,
      fingerprint: fleet.fingerprint,
      auth: role,
    });
  });

  // What the Incus-style clients ask a remote: the server's info, and to redeem a trust token.
  app.get("/1.0", async (c) => {
    const role = await roleOf(fleet, connectionOf(c).caller);
    return sync(c, {
      api_extensions: [],
      api_status: "stable",
      api_version: "1.0",
      auth: role === "admin" ? "trusted" : "untrusted",
      public: false,
      auth_methods: ["tls"],
      environment: {
        server: "outpost-hub",
        server_version: VERSION,
        certificate_fingerprint: fleet.fingerprint,
      },
    });
  });

  app.post("/1.0/certificates", async (c) => {
    const caller = connectionOf(c).caller;
    if (caller.via !== "https") throw new BadRequest("Redeem a trust token over HTTPS");
    const body = await parseBody(c, RedeemSchema, { requireBody: true });
    const token = body.trust_token ?? body.password;
    if (!token) throw new Forbidden("Only a trust token can add a client to the hub");
    await fleet.admins.redeem(caller.certificate, token);
    return sync(c, {}, { status: 201 });
  });

  app.get(`${FLEET_API}/clients`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    return sync(c, await fleet.admins.list());
  });

  app.post(`${FLEET_API}/clients`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    const body = await parseBody(c, ClientTokenSchema, { requireBody: true });
    return sync(c, await fleet.admins.issue(body.name, body.expires), { status: 201 });
  });

  app.delete(`${FLEET_API}/clients/:id`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    await fleet.admins.remove(c.req.param("id"));
    return sync(c, {});
  });

  // What a fresh host needs: the install script and the agent program (public: no secret in them).
  app.get("/install.sh", (c) => {
    const url = reachedAs(c) ?? fleet.urls[0];
    if (!url) throw new BadRequest("The hub has no address hosts can reach: start it with --url");
    return c.body(installScript({ url, pin: fleet.publicKeyPin, program: program() }), 200, {
      "Content-Type": "text/x-shellscript; charset=utf-8",
    });
  });

  app.get(
    `${FLEET_API}/agent`,
    (c) => {
      const { version, sha256, size } = program();
      return sync(c, { version, sha256, size });
    },
  );

  app.get(`${FLEET_API}/agent.tar.gz`, async (c) => {
    const { file: path, size } = program();
    const file = await Deno.open(path);
    return c.body(file.readable, 200, {
      "Content-Type": "application/gzip",
      "Content-Length": String(size),
    });
  });

  app.post(`${FLEET_API}/enroll`, async (c) => {
    const caller = connectionOf(c).caller;
    if (caller.via !== "https") {
      throw new BadRequest("Enroll over HTTPS, with the agent's certificate");
    }
    const body = await parseBody(c, EnrollRequestSchema, { requireBody: true });
    return sync(c, await fleet.enroll(caller.certificate, body));
  });

  app.get(TUNNEL_PATH, async (c) => {
    const connection = connectionOf(c);
    const caller = connection.caller;
    const host = caller.via === "https" ? await fleet.hostOf(caller.certificate) : undefined;
    if (!host) throw new Forbidden("Only an enrolled host may open a tunnel");
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new BadRequest("The tunnel is a websocket");
    }
    const { socket, response } = connection.upgradeWebSocket(c.req.raw);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      const session = fleet.attach(host, {
        send: (data) => socket.send(data),
        close: (code, reason) => socket.close(code, reason),
      });
      socket.onmessage = (e) => session.tunnel.receive(e.data as string | ArrayBuffer);
      socket.onclose = () => session.tunnel.close("The tunnel's connection closed");
      socket.onerror = () => session.tunnel.close("The tunnel's connection failed");
    };
    return response;
  });

  app.get(`${FLEET_API}/hosts`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    const selector = labelSelector(c);
    const hosts: FleetHost[] = (await fleet.hosts()).filter((h) =>
      matchesLabels(h.labels, selector)
    );
    return sync(c, hosts);
  });

  app.get(`${FLEET_API}/hosts/:host`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    return sync(c, await fleet.host(c.req.param("host")));
  });

  app.get(`${FLEET_API}/hosts/:host/events`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    return sync(c, await fleet.events(c.req.param("host")));
  });

  app.delete(`${FLEET_API}/hosts/:host`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    await fleet.removeHost(c.req.param("host"));
    return sync(c, {});
  });

  // A host's own API, through its tunnel: /fleet/v1/hosts/NAME/1.0/... → /1.0/... on the host.
  app.all(`${FLEET_API}/hosts/:host/*`, async (c) => {
    const connection = connectionOf(c);
    requireAdmin(await roleOf(fleet, connection.caller));
    const name = c.req.param("host");
    const url = new URL(c.req.url);
    const rest = url.pathname.slice(`${FLEET_API}/hosts/`.length);
    const path = rest.slice(rest.indexOf("/")) + url.search;
    if (!path.startsWith("/1.0") && path !== "/" && !path.startsWith("/?")) {
      throw new BadRequest("Only a host's /1.0 API can be reached through the hub");
    }
    return await fleet.relay(name, c.req.raw, path, connection);
  });

  app.post(`${FLEET_API}/upgrade`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    const body = await parseBody(c, FleetUpgradeRequestSchema);
    return sync(c, {
      version: program().version,
      sha256: program().sha256,
      hosts: await fleet.upgrade(body.labels, program().sha256),
    });
  });

  app.get(`${FLEET_API}/metrics`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    return c.body(await fleet.metrics(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
  });

  app.get(`${FLEET_API}/tokens`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    return sync(c, await fleet.listTokens());
  });

  app.post(`${FLEET_API}/tokens`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    const body = await parseBody(c, TokenCreateSchema);
    return sync(c, await fleet.createToken(body), { status: 201 });
  });

  app.delete(`${FLEET_API}/tokens/:id`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    await fleet.revokeToken(c.req.param("id"));
    return sync(c, {});
  });

  const sessions = new DashboardSessions();
  mountDashboard(app, {
    fleet,
    sessions,
    isAdmin: async (c) => (await roleOf(fleet, connectionOf(c).caller)) === "admin",
  });
  app.get("/", (c) => c.redirect("/dashboard", 303));
  // A one-time link that logs a browser in to the dashboard.
  app.post(`${FLEET_API}/dashboard`, async (c) => {
    requireAdmin(await roleOf(fleet, connectionOf(c).caller));
    const base = fleet.urls[0];
    if (!base) {
      throw new BadRequest("The hub has no address browsers can reach: start it with --url");
    }
    const { secret, expiresAt } = sessions.login();
    return sync(c, { url: `${base}/dashboard/login?token=${secret}`, expires_at: expiresAt });
  });

  app.notFound((c) => json(c, errorBody("not found", 404), 404));
  app.onError((err, c) => {
    const { status, message } = toHttpError(err);
    if (status >= 500) log(`hub: error: ${err instanceof Error ? err.stack : err}`);
    return json(c, errorBody(message, status), status);
  });
  return app;
}
