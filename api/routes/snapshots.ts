/** `/1.0/instances/{name}/snapshots*`: list, take, show, rename, update and delete snapshots. */
import type { Agent } from "../../agent/agent.ts";
import { snapshotView } from "../views.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { async, sync } from "../../server/envelope.ts";
import {
  SnapshotPostSchema,
  SnapshotPutSchema,
  SnapshotsPostSchema,
} from "../../contract/schemas.ts";
import { snapshotUrl } from "../../contract/urls.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { resources } from "./instances.ts";

export function snapshotRoutes(agent: Agent): Route[] {
  const { snapshots, operations } = agent;

  const snapResources = (name: string, snap: string) => ({
    ...resources(name),
    instances_snapshots: [snapshotUrl(name, snap)],
  });

  const list: Handler = (c) => {
    const name = c.req.param("name")!;
    const all = snapshots.list(name);
    if (recursion(c) === 0) return sync(c, all.map((s) => snapshotUrl(name, s.name)));
    return sync(c, all.map((s) => snapshotView(s, agent.profiles.expand(s))));
  };

  const create: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, SnapshotsPostSchema);
    const work = snapshots.prepareCreate(name, body);
    return async(
      c,
      operations.start({
        description: "Snapshotting instance",
        resources: resources(name),
        run: async () => {
          await work();
        },
      }),
    );
  };

  const get: Handler = (c) => {
    const { name, snap } = c.req.param();
    const rec = snapshots.get(name, snap);
    return sync(c, snapshotView(rec, agent.profiles.expand(rec)));
  };

  const rename: Handler = async (c) => {
    const { name, snap } = c.req.param();
    const body = await parseBody(c, SnapshotPostSchema);
    const work = snapshots.prepareRename(name, snap, body.name);
    return async(
      c,
      operations.start({
        description: "Renaming snapshot",
        resources: snapResources(name, snap),
        run: async () => {
          await work();
        },
      }),
    );
  };

  const put: Handler = async (c) => {
    const { name, snap } = c.req.param();
    const body = await parseBody(c, SnapshotPutSchema);
    // A PUT replaces the expiry (absent means none, Go's zero time); the description is kept.
    snapshots.update(name, snap, { ...body, expires_at: body.expires_at ?? null });
    return async(
      c,
      operations.start({
        description: "Updating snapshot",
        resources: snapResources(name, snap),
        run: async () => {},
      }),
    );
  };

  const patch: Handler = async (c) => {
    const { name, snap } = c.req.param();
    snapshots.update(name, snap, await parseBody(c, SnapshotPutSchema));
    return sync(c, {});
  };

  const remove: Handler = (c) => {
    const { name, snap } = c.req.param();
    const work = snapshots.prepareDelete(name, snap);
    return async(
      c,
      operations.start({
        description: "Deleting snapshot",
        resources: snapResources(name, snap),
        run: work,
      }),
    );
  };

  return table([
    ["GET", "/1.0/instances/:name/snapshots", "trusted", list],
    ["POST", "/1.0/instances/:name/snapshots", "trusted", create],
    ["GET", "/1.0/instances/:name/snapshots/:snap", "trusted", get],
    ["POST", "/1.0/instances/:name/snapshots/:snap", "trusted", rename],
    ["PUT", "/1.0/instances/:name/snapshots/:snap", "trusted", put],
    ["PATCH", "/1.0/instances/:name/snapshots/:snap", "trusted", patch],
    ["DELETE", "/1.0/instances/:name/snapshots/:snap", "trusted", remove],
  ]);
}
