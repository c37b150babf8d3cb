/** `/1.0/instances/{name}/snapshots*`: list, take, show, rename, update and delete snapshots. */
import { Hono } from "hono";
import { z } from "zod";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import { snapshotUrl, snapshotView } from "../../agent/snapshots.ts";
import { parseBody, recursion } from "../body.ts";
import { async, sync } from "../envelope.ts";
import { resources } from "./instances.ts";

const expiresAt = z.string().nullish();

/** `POST /1.0/instances/{name}/snapshots` (Incus's `InstanceSnapshotsPost`). */
export const SnapshotsPostSchema = z.object({
  name: z.string().default(""),
  stateful: z.boolean().default(false),
  expires_at: expiresAt,
}).strict();

/** `POST /1.0/instances/{name}/snapshots/{snap}`: a rename (`InstanceSnapshotPost`). */
export const SnapshotPostSchema = z.object({
  name: z.string({ error: "a new name is required" }),
  migration: z.boolean().default(false),
  live: z.boolean().optional(),
  target: z.unknown().optional(),
}).strict();

/**
 * `PUT/PATCH /1.0/instances/{name}/snapshots/{snap}` (`InstanceSnapshotPut`, plus description).
 * The read-only fields of a full snapshot object, which clients send back, are ignored; any other
 * field is refused.
 */
export const SnapshotPutSchema = z.object({
  expires_at: expiresAt,
  description: z.string().optional(),
  ...Object.fromEntries(
    [
      "name",
      "created_at",
      "last_used_at",
      "architecture",
      "config",
      "devices",
      "ephemeral",
      "profiles",
      "stateful",
      "size",
      "expanded_config",
      "expanded_devices",
    ].map((k) => [k, z.unknown().optional()]),
  ),
}).strict();

export function snapshotRoutes(agent: Agent): Hono {
  const app = new Hono();
  const { snapshots, operations } = agent;

  const snapResources = (name: string, snap: string) => ({
    ...resources(name),
    instances_snapshots: [snapshotUrl(name, snap)],
  });

  app.get("/1.0/instances/:name/snapshots", (c) => {
    const name = c.req.param("name");
    const list = snapshots.list(name);
    if (recursion(c) === 0) return sync(c, list.map((s) => snapshotUrl(name, s.name)));
    return sync(c, list.map(snapshotView));
  });

  app.post("/1.0/instances/:name/snapshots", async (c) => {
    const name = c.req.param("name");
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
  });

  app.get("/1.0/instances/:name/snapshots/:snap", (c) => {
    const { name, snap } = c.req.param();
    return sync(c, snapshotView(snapshots.get(name, snap)));
  });

  app.post("/1.0/instances/:name/snapshots/:snap", async (c) => {
    const { name, snap } = c.req.param();
    const body = await parseBody(c, SnapshotPostSchema);
    if (body.migration) throw new BadRequest("Snapshot migration is not supported");
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
  });

  app.put("/1.0/instances/:name/snapshots/:snap", async (c) => {
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
  });

  app.patch("/1.0/instances/:name/snapshots/:snap", async (c) => {
    const { name, snap } = c.req.param();
    snapshots.update(name, snap, await parseBody(c, SnapshotPutSchema));
    return sync(c, {});
  });

  app.delete("/1.0/instances/:name/snapshots/:snap", (c) => {
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
  });

  return app;
}
