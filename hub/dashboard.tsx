/** @jsxImportSource hono/jsx */
/**
 * The hub's web dashboard: server-rendered (Hono JSX, no build step, no script framework). Hosts
 * with their status, last contact, version, labels and resources; their instances with start and
 * stop buttons; each host's newest events. The page refreshes its hosts section when the fleet
 * changes (server-sent events), and works without script too (buttons are forms).
 *
 * A browser has no client certificate: an administrator asks for a one-time login link
 * (`outpost hub dashboard`), which the page exchanges for a session cookie (HttpOnly, Secure,
 * SameSite=Strict, 12 hours). Buttons also need the request to come from the page itself.
 */
import { hashSecret, newSecret } from "./secrets.ts";
import type { Context, Hono } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { streamSSE } from "hono/streaming";
import { raw } from "hono/html";
import { Forbidden } from "../contract/errors.ts";
import type { FleetHost } from "../contract/fleet.ts";
import type { Fleet } from "./fleet.ts";
import type { HostEvent } from "./store.ts";

const COOKIE = "outpost_session";
const SESSION_MS = 12 * 3_600_000;
const LOGIN_MS = 10 * 60_000;
/** Sessions and login links kept at once (the oldest go first). */
const MAX_SESSIONS = 200;
/** Browsers following live updates at once. */
const MAX_STREAMS = 100;
const EVENTS_SHOWN = 10;

/** Login links and browser sessions, by the hash of their secret, in memory. */
export class DashboardSessions {
  #logins = new Map<string, number>();
  #sessions = new Map<string, number>();

  #put(map: Map<string, number>, secret: string, ms: number): void {
    const now = Date.now();
    for (const [k, until] of map) if (until <= now) map.delete(k);
    while (map.size >= MAX_SESSIONS) map.delete(map.keys().next().value!);
    map.set(hashSecret(secret), now + ms);
  }

  /** A one-time login secret, valid ten minutes. */
  login(): { secret: string; expiresAt: string } {
    const secret = newSecret();
    this.#put(this.#logins, secret, LOGIN_MS);
    return { secret, expiresAt: new Date(Date.now() + LOGIN_MS).toISOString() };
  }

  /** Spends a login secret for a session secret, or undefined. */
  redeem(login: string): string | undefined {
    const key = hashSecret(login);
    const until = this.#logins.get(key);
    this.#logins.delete(key);
    if (!until || until <= Date.now()) return undefined;
    const session = newSecret();
    this.#put(this.#sessions, session, SESSION_MS);
    return session;
  }

  valid(session: string | undefined): boolean {
    if (!session) return false;
    const until = this.#sessions.get(hashSecret(session));
    return until !== undefined && until > Date.now();
  }
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** What an event says in one line. */
function eventText(e: HostEvent): string {
  const m = (e.event as { metadata?: { action?: string; source?: string; message?: string } })
    ?.metadata;
  if (e.type === "dropped") return String((e.event as { message?: string }).message ?? "");
  return [m?.action, m?.source].filter(Boolean).join(" ") || e.type;
}

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d2430; background: #f6f7f9; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 0; }
.host { background: #fff; border: 1px solid #d8dde5; border-radius: 8px; padding: 1rem; margin: 1rem 0; }
.head { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap; }
.status { font-weight: 600; padding: 0.1rem 0.5rem; border-radius: 4px; }
.online { background: #d7f5dd; color: #135c22; } .offline { background: #f8d9d9; color: #7a1818; }
.meta { color: #556; font-size: 0.9rem; }
table { border-collapse: collapse; margin-top: 0.6rem; width: 100%; }
td, th { text-align: left; padding: 0.25rem 0.6rem; border-bottom: 1px solid #eef0f4; font-size: 0.9rem; }
.label { background: #e8eefc; border-radius: 4px; padding: 0 0.4rem; margin-right: 0.3rem; }
form { display: inline; } button { cursor: pointer; }
ul.events { margin: 0.5rem 0 0; padding-left: 1.2rem; font-size: 0.85rem; color: #445; }
`;

const LIVE = `
const src = new EventSource("/dashboard/stream");
let pending = false;
// Whatever changed between the page's rendering and the stream's opening is fetched at the open.
const refresh = () => {
  if (pending) return;
  pending = true;
  setTimeout(async () => {
    pending = false;
    const r = await fetch("/dashboard/hosts", { credentials: "same-origin" });
    if (r.ok) document.getElementById("hosts").innerHTML = await r.text();
  }, 200);
};
src.addEventListener("open", refresh);
src.addEventListener("change", refresh);
`;
function HostCard({ host, events }: { host: FleetHost; events: HostEvent[] }) {
  const inv = host.inventory;
  const online = host.status === "online";
  return (
    <section class="host" id={`host-${host.name}`} data-status={host.status}>
      <div class="head">
        <h2>{host.name}</h2>
        <span class={`status ${host.status}`}>{host.status}</span>
        <span class="meta">last seen {host.last_seen || "never"}</span>
        <span class="meta">outpost {inv?.version ?? "?"}</span>
        {inv && (
          <span class="meta">
            {inv.cpus} CPUs, {formatBytes(inv.memory_bytes)}, KVM {inv.kvm ? "usable" : "unusable"}
          </span>
        )}
        <span>
          {Object.entries(host.labels).map(([k, v]) => <span class="label" key={k}>{k}={v}</span>)}
        </span>
      </div>
      <table>
        <thead>
          <tr>
            <th>Instance</th>
            <th>Type</th>
            <th>State</th>
            <th>Addresses</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          {(inv?.instances ?? []).map((i) => (
            <tr key={i.name} data-instance={i.name} data-state={i.status}>
              <td>{i.name}</td>
              <td>{i.type}</td>
              <td class="state">{i.status}</td>
              <td>{i.addresses.join(", ")}</td>
              <td>
                {online && (
                  <form
                    method="post"
                    action={`/dashboard/hosts/${host.name}/instances/${i.name}/${
                      i.status === "Running" ? "stop" : "start"
                    }`}
                  >
                    <button type="submit">{i.status === "Running" ? "Stop" : "Start"}</button>
                  </form>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {events.length > 0 && (
        <ul class="events">
          {events.map((e, i) => <li key={i}>{e.timestamp} {eventText(e)}</li>)}
        </ul>
      )}
    </section>
  );
}

async function hostsSection(fleet: Fleet) {
  const hosts = await fleet.hosts();
  const cards = await Promise.all(hosts.map(async (h) => ({
    host: h,
    events: (await fleet.events(h.name).catch(() => [])).slice(-EVENTS_SHOWN).reverse(),
  })));
  return (
    <>
      <p class="meta">
        {hosts.filter((h) => h.status === "online").length} of {hosts.length} hosts online
      </p>
      {cards.map((c) => <HostCard key={c.host.name} host={c.host} events={c.events} />)}
    </>
  );
}

/** Whether a state-changing request came from the dashboard's own page. */
function sameOrigin(c: Context): boolean {
  const site = c.req.header("sec-fetch-site");
  if (site !== undefined) return site === "same-origin";
  const origin = c.req.header("origin");
  return origin !== undefined && origin === `https://${c.req.header("host")}`;
}

export interface DashboardOptions {
  fleet: Fleet;
  sessions: DashboardSessions;
  /** Whether the caller is an administrator by its connection (the socket, a certificate). */
  isAdmin: (c: Context) => Promise<boolean>;
}

export function mountDashboard(app: Hono, { fleet, sessions, isAdmin }: DashboardOptions): void {
  let streams = 0;
  const allowed = async (c: Context) => sessions.valid(getCookie(c, COOKIE)) || await isAdmin(c);
  const guard = async (c: Context) => {
    if (!await allowed(c)) {
      throw new Forbidden('Log in with the link "outpost hub dashboard" prints');
    }
  };

  app.get("/dashboard/login", (c) => {
    const session = sessions.redeem(c.req.query("token") ?? "");
    if (!session) throw new Forbidden("This login link is invalid, used or expired");
    setCookie(c, COOKIE, session, {
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
      path: "/",
      maxAge: SESSION_MS / 1000,
    });
    return c.redirect("/dashboard", 303);
  });

  app.get("/dashboard", async (c) => {
    await guard(c);
    return c.html(
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <title>outpost fleet</title>
          <style>{raw(STYLE)}</style>
        </head>
        <body>
          <h1>outpost fleet</h1>
          <div id="hosts">{await hostsSection(fleet)}</div>
          {/* Trusted constants: raw, since escaping would break the script's `=>`. */}
          <script>{raw(LIVE)}</script>
        </body>
      </html>,
    );
  });

  app.get("/dashboard/hosts", async (c) => {
    await guard(c);
    return c.html(await hostsSection(fleet));
  });

  app.get("/dashboard/stream", async (c) => {
    await guard(c);
    if (streams >= MAX_STREAMS) throw new Forbidden("Too many dashboards are open");
    streams++;
    return streamSSE(c, async (stream) => {
      let wake: (() => void) | undefined;
      let changed = false;
      const off = fleet.onChange(() => {
        changed = true;
        wake?.();
      });
      stream.onAbort(() => wake?.());
      try {
        while (!stream.aborted && !stream.closed) {
          if (changed) {
            changed = false;
            await stream.writeSSE({ event: "change", data: "{}" });
          }
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 15_000);
          });
          if (!changed) await stream.write(": keep-alive\n\n");
        }
      } finally {
        off();
        streams--;
      }
    });
  });

  app.post("/dashboard/hosts/:host/instances/:name/:action", async (c) => {
    await guard(c);
    if (!sameOrigin(c)) throw new Forbidden("Buttons work only from the dashboard's own page");
    const { host, name, action } = c.req.param();
    if (action !== "start" && action !== "stop") throw new Forbidden("Unknown action");
    await fleet.changeState(host, name, action);
    return c.redirect("/dashboard", 303);
  });
}
