/**
 * Routes as tables: each resource's endpoints are rows `{ method, path, access, handler }`, and
 * `register()` puts any table on the app, so serving the instance routes again under LXD's legacy
 * `/1.0/containers` is one line in app.ts.
 */
import type { Context, Hono } from "hono";
import { NotFound } from "../contract/errors.ts";
import type { InstanceType } from "../contract/schemas.ts";

/**
 * Who may call a route over HTTPS (the unix socket is trusted as a whole: its file mode is the
 * check). Declared on every route and enforced by `api/access.ts` before the handler runs.
 */
export const ACCESS_LEVELS = {
  /** Anyone who reaches the listener: how a client learns what the server is and if it trusts it. */
  untrusted: "anyone who reaches the listener",
  /** Anyone holding a secret the daemon handed out (an operation's websocket secrets). */
  secret: "anyone holding the secret in the URL",
  /**
   * Trusted clients and metrics certificates; anyone when `core.metrics_authentication` is false.
   */
  metrics: "trusted clients and metrics certificates",
  /** Trusted clients; a restricted certificate without the `default` project reads only. */
  trusted: "trusted clients only",
  /** Unrestricted trusted clients: the server's config and its trust store. */
  admin: "unrestricted trusted clients only",
} as const;
export type Access = keyof typeof ACCESS_LEVELS;

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * A collection of instances as a client addresses it: `/1.0/instances` (every type) or one of LXD's
 * legacy paths, which hold one type each (`/1.0/containers`, `/1.0/virtual-machines`).
 */
export interface InstanceFamily {
  /** The collection's URL. */
  base: string;
  /** The only type the collection holds; undefined for all. */
  type?: InstanceType;
}

export const INSTANCES: InstanceFamily = { base: "/1.0/instances" };

/** A handler gets the request and the instance family its route was reached through. */
export type Handler = (c: Context, family: InstanceFamily) => Response | Promise<Response>;

export interface Route {
  method: Method;
  /** A Hono path pattern (`/1.0/instances/:name`). */
  path: string;
  access: Access;
  handler: Handler;
}

/** A table written as rows `[method, path, access, handler]`, one endpoint a line. */
export function table(rows: readonly [Method, string, Access, Handler][]): Route[] {
  return rows.map(([method, path, access, handler]) => ({ method, path, access, handler }));
}

/** Refuses a caller the route's access level does not let in (throws Forbidden). */
export type Guard = (c: Context, route: Route) => void;

/** Registers every route of a table on the app, in order, each behind the guard. */
export function register(app: Hono, routes: readonly Route[], guard: Guard = () => {}): void {
  for (const r of routes) {
    app.on(r.method, r.path, (c) => {
      guard(c, r);
      return r.handler(c, INSTANCES);
    });
  }
}

/** Whether a route is one of the instance routes (`/1.0/instances` and below). */
function isInstanceRoute(r: Route): boolean {
  return r.path === INSTANCES.base || r.path.startsWith(`${INSTANCES.base}/`);
}

/**
 * The instance routes again under another family's base, as LXD serves them. Where the family
 * holds one type, an instance of another type is not found there (as with LXD: a VM is not at
 * `/1.0/containers/NAME`); `typeOf` looks an instance's type up (and throws NotFound).
 */
export function instanceAlias(
  routes: readonly Route[],
  family: InstanceFamily,
  typeOf: (name: string) => InstanceType,
): Route[] {
  return routes.filter(isInstanceRoute).map((r) => {
    const gated = family.type !== undefined && r.path.startsWith(`${INSTANCES.base}/:name`);
    return {
      ...r,
      path: family.base + r.path.slice(INSTANCES.base.length),
      handler: (c) => {
        if (gated) {
          const name = c.req.param("name") ?? "";
          const type = typeOf(name);
          if (type !== family.type) {
            throw new NotFound(
              `Instance "${name}" is a ${type}, not found under ${family.base}: use ${INSTANCES.base}/${name}`,
            );
          }
        }
        return r.handler(c, family);
      },
    };
  });
}
