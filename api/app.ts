/** The Hono app serving the Incus /1.0 API: every resource's route table, registered in one place. */
import { Hono } from "hono";
import type { Agent } from "../agent/agent.ts";
import { accessGuard, afterRequest } from "./access.ts";
import { json, toHttpError } from "../server/envelope.ts";
import { errorBody } from "../contract/responses.ts";
import { instanceAlias, type InstanceFamily, register, type Route } from "./route_table.ts";
import { backupRoutes } from "./routes/backups.ts";
import { certificateRoutes } from "./routes/certificates.ts";
import { consoleRoutes } from "./routes/console.ts";
import { eventRoutes } from "./routes/events.ts";
import { execRoutes } from "./routes/exec.ts";
import { fileRoutes } from "./routes/files.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { imageRoutes } from "./routes/images.ts";
import { instanceRoutes } from "./routes/instances.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { networkRoutes } from "./routes/networks.ts";
import { operationRoutes } from "./routes/operations.ts";
import { storageRoutes } from "./routes/storage.ts";
import { profileRoutes } from "./routes/profiles.ts";
import { serverRoutes } from "./routes/server.ts";
import { sftpRoutes } from "./routes/sftp.ts";
import { snapshotRoutes } from "./routes/snapshots.ts";

/** One route table per resource. */
const TABLES: ((agent: Agent) => Route[])[] = [
  serverRoutes,
  instanceRoutes,
  execRoutes,
  consoleRoutes,
  fileRoutes,
  sftpRoutes,
  snapshotRoutes,
  backupRoutes,
  operationRoutes,
  eventRoutes,
  imageRoutes,
  profileRoutes,
  networkRoutes,
  storageRoutes,
  metricsRoutes,
  certificateRoutes,
  fleetRoutes,
];

/**
 * LXD's legacy paths, which LXD 5.0 still serves and pylxd and Ansible's `lxd_container` use: every
 * instance route again, each collection holding one type.
 */
export const LEGACY_FAMILIES: InstanceFamily[] = [
  { base: "/1.0/containers", type: "container" },
  { base: "/1.0/virtual-machines", type: "virtual-machine" },
];

/** Every route the app serves, legacy aliases included, in registration order. */
export function allRoutes(agent: Agent): Route[] {
  const routes = TABLES.flatMap((table) => table(agent));
  const typeOf = (name: string) => agent.instances.get(name).type;
  return [
    ...routes,
    ...LEGACY_FAMILIES.flatMap((family) => instanceAlias(routes, family, typeOf)),
  ];
}

/** A request path as one log line can show it (no control characters, bounded length). */
function logSafe(path: string): string {
  // deno-lint-ignore no-control-regex
  const clean = path.replace(/[\u0000-\u001f\u007f]/g, "?");
  return clean.length > 200 ? `${clean.slice(0, 200)}...` : clean;
}

export function createApp(agent: Agent): Hono {
  const app = new Hono();
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    afterRequest(agent, c);
    const ms = (performance.now() - started).toFixed(1);
    agent.log(`${c.req.method} ${logSafe(c.req.path)} ${c.res.status} ${ms}ms`);
  });
  register(app, allRoutes(agent), accessGuard(agent));
  app.notFound((c) => json(c, errorBody("not found", 404), 404));
  app.onError((err, c) => {
    const { status, message } = toHttpError(err);
    if (status >= 500) agent.log(`error: ${err instanceof Error ? err.stack : err}`);
    return json(c, errorBody(message, status), status);
  });
  return app;
}
