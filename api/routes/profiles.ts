/** `/1.0/profiles*`: list, create, show, replace, merge, rename and delete profiles. */
import type { Agent } from "../../agent/agent.ts";
import type { ProfileRecord } from "../../agent/store.ts";
import {
  ProfilePatchSchema,
  ProfilePostSchema,
  ProfilePutSchema,
  ProfilesPostSchema,
} from "../../contract/schemas.ts";
import { instanceUrl, profileUrl } from "../../contract/urls.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { profileView } from "../views.ts";

export function profileRoutes(agent: Agent): Route[] {
  const { profiles } = agent;
  const view = (p: ProfileRecord) => profileView(p, profiles.usedBy(p.name).map(instanceUrl));

  const list: Handler = (c) => {
    const all = profiles.list();
    if (recursion(c) === 0) return sync(c, all.map((p) => profileUrl(p.name)));
    return sync(c, all.map(view));
  };

  /** Incus answers a new profile with 201, its URL and no metadata. */
  const create: Handler = async (c) => {
    const body = await parseBody(c, ProfilesPostSchema, { requireBody: true });
    const rec = profiles.create(body);
    c.header("Location", profileUrl(rec.name));
    return sync(c, null, { status: 201 });
  };

  const get: Handler = (c) => {
    const p = profiles.get(c.req.param("name")!);
    return sync(c, view(p), { etag: profiles.etag(p) });
  };

  const put: Handler = async (c) => {
    const body = await parseBody(c, ProfilePutSchema, { requireBody: true });
    await profiles.update(c.req.param("name")!, body, c.req.header("if-match"));
    return sync(c, {});
  };

  const patch: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, ProfilePatchSchema);
    await profiles.patch(name, body, c.req.header("if-match"));
    return sync(c, {});
  };

  const rename: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, ProfilePostSchema, { requireBody: true });
    profiles.rename(name, body.name);
    c.header("Location", profileUrl(body.name));
    return sync(c, null, { status: 201 });
  };

  const remove: Handler = (c) => {
    profiles.delete(c.req.param("name")!);
    return sync(c, {});
  };

  return table([
    ["GET", "/1.0/profiles", "trusted", list],
    ["POST", "/1.0/profiles", "trusted", create],
    ["GET", "/1.0/profiles/:name", "trusted", get],
    ["PUT", "/1.0/profiles/:name", "trusted", put],
    ["PATCH", "/1.0/profiles/:name", "trusted", patch],
    ["POST", "/1.0/profiles/:name", "trusted", rename],
    ["DELETE", "/1.0/profiles/:name", "trusted", remove],
  ]);
}
