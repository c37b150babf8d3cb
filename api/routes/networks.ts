/** `/1.0/networks*`: list, create, show, replace, merge and delete managed bridges; their leases. */
import type { Agent } from "../../agent/agent.ts";
import type { NetworkRecord } from "../../agent/store.ts";
import {
  NetworkPatchSchema,
  NetworkPostSchema,
  NetworkPutSchema,
  NetworksPostSchema,
} from "../../contract/schemas.ts";
import { networkUrl } from "../../contract/urls.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { leaseView, networkView } from "../views.ts";

export function networkRoutes(agent: Agent): Route[] {
  const { networks } = agent;
  const view = (n: NetworkRecord) => networkView(n, agent.networkUsers(n.name));

  const list: Handler = (c) => {
    const all = networks.list();
    if (recursion(c) === 0) return sync(c, all.map((n) => networkUrl(n.name)));
    return sync(c, all.map(view));
  };

  /** Incus answers a new network with 201, its URL and no metadata. */
  const create: Handler = async (c) => {
    const body = await parseBody(c, NetworksPostSchema, { requireBody: true });
    const rec = await networks.create(body);
    c.header("Location", networkUrl(rec.name));
    return sync(c, null, { status: 201 });
  };

  const get: Handler = (c) => {
    const n = networks.get(c.req.param("name")!);
    return sync(c, view(n), { etag: networks.etag(n) });
  };

  const put: Handler = async (c) => {
    const body = await parseBody(c, NetworkPutSchema, { requireBody: true });
    await networks.update(c.req.param("name")!, body, c.req.header("if-match"));
    return sync(c, {});
  };

  const patch: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, NetworkPatchSchema);
    const cur = networks.get(name);
    await networks.update(name, {
      description: body.description ?? cur.description,
      config: { ...cur.config, ...(body.config ?? {}) },
    }, c.req.header("if-match"));
    return sync(c, {});
  };

  const remove: Handler = async (c) => {
    const name = c.req.param("name")!;
    networks.get(name);
    await networks.delete(name, agent.networkUsers(name));
    return sync(c, {});
  };

  const rename: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, NetworkPostSchema, { requireBody: true });
    networks.get(name);
    await networks.rename(name, body.name, agent.networkUsers(name));
    c.header("Location", networkUrl(body.name));
    return sync(c, {});
  };

  const leases: Handler = async (c) => {
    return sync(c, (await networks.leases(c.req.param("name")!)).map(leaseView));
  };

  return table([
    ["GET", "/1.0/networks", "trusted", list],
    ["POST", "/1.0/networks", "trusted", create],
    ["GET", "/1.0/networks/:name", "trusted", get],
    ["PUT", "/1.0/networks/:name", "trusted", put],
    ["PATCH", "/1.0/networks/:name", "trusted", patch],
    ["POST", "/1.0/networks/:name", "trusted", rename],
    ["DELETE", "/1.0/networks/:name", "trusted", remove],
    ["GET", "/1.0/networks/:name/leases", "trusted", leases],
  ]);
}
