/** `/1.0/instances*`: list, create, get, update, rename, delete, state, backups, logs. */
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import type { InstanceRecord } from "../../agent/store.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { applyFilter } from "../filter.ts";
import { async, sync } from "../../server/envelope.ts";
import {
  InstancePatchSchema,
  InstancePostSchema,
  InstancePutSchema,
  type InstancesPost,
  InstancesPostSchema,
  InstanceStatePutSchema,
} from "../../contract/schemas.ts";
import { snapshotView } from "../views.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { fullInstanceView, instanceView, stateView } from "../views.ts";
import { instanceLogUrl, instanceUrl } from "../../contract/urls.ts";

export function resources(name: string) {
  return {
    containers: [`/1.0/containers/${encodeURIComponent(name)}`],
    instances: [instanceUrl(name)],
  };
}

const VERBS = {
  start: "Starting",
  stop: "Stopping",
  restart: "Restarting",
  freeze: "Freezing",
  unfreeze: "Unfreezing",
};

export function instanceRoutes(agent: Agent): Route[] {
  const { instances, operations } = agent;

  const view = async (inst: InstanceRecord, depth: number) => {
    const expanded = agent.profiles.expand(inst);
    if (depth < 2) return instanceView(inst, await instances.status(inst), expanded);
    const snapshots = agent.snapshots.list(inst.name).map((s) =>
      snapshotView(s, agent.profiles.expand(s))
    );
    return fullInstanceView(
      inst,
      await instances.state(inst),
      expanded,
      snapshots.length > 0 ? snapshots : null,
    );
  };

  // Through a legacy path (`/1.0/containers`) the list holds that type only, and its URLs are in
  // that path, as LXD answers.
  const list: Handler = async (c, family) => {
    const depth = recursion(c);
    const filter = c.req.query("filter");
    const all = instances.list().filter((i) => !family.type || i.type === family.type);
    const url = (name: string) => `${family.base}/${name}`;
    if (depth === 0 && !filter) return sync(c, all.map((i) => url(i.name)));
    const views = applyFilter(
      await Promise.all(all.map((i) => view(i, Math.max(depth, 1)))),
      filter,
    );
    if (depth === 0) return sync(c, views.map((v) => url(v.name)));
    return sync(c, views);
  };

  const create: Handler = async (c, family) => {
    if ((c.req.header("content-type") ?? "").startsWith("application/octet-stream")) {
      return importBackup(c);
    }
    const body = await parseBody(c, InstancesPostSchema);
    if (body.source.type === "copy") return copy(c, body);
    if (body.source.type !== "image") {
      throw new BadRequest(
        `Instance source type "${body.source.type}" is not supported yet: use "image"`,
      );
    }
    const image = body.source.alias ?? body.source.fingerprint;
    if (!image) throw new BadRequest("source needs an alias or a fingerprint");
    if (body.source.server) {
      throw new BadRequest("Remote image servers are not supported yet: import the image first");
    }
    const work = instances.prepareCreate({
      name: body.name,
      type: body.type || family.type || "container",
      image,
      config: body.config,
      devices: body.devices,
      profiles: body.profiles,
      description: body.description,
      ephemeral: body.ephemeral,
    });
    return async(c, makeOperation("Creating instance", body, work));
  };

  /** The operation that makes a new instance, then starts it if the request says `start`. */
  const makeOperation = (
    description: string,
    body: InstancesPost,
    work: () => Promise<unknown>,
  ) =>
    operations.start({
      description,
      resources: resources(body.name),
      run: async () => {
        await work();
        if (body.start) {
          await (await instances.prepareState(body.name, {
            action: "start",
            force: false,
            timeout: -1,
          }))();
        }
      },
    });

  /**
   * A backup uploaded as the body (`lxc import`): read whole and checked while the request is
   * open, so a bad one is a 400; the operation reports the new instance.
   */
  const importBackup = async (c: Parameters<Handler>[0]) => {
    const body = c.req.raw.body;
    if (!body) throw new BadRequest("Empty backup upload");
    const name = c.req.header("x-incus-name") ?? c.req.header("x-lxd-name") ?? undefined;
    const rec = await agent.backups.import(body, name || undefined);
    return async(
      c,
      operations.start({
        description: "Restoring backup",
        resources: resources(rec.name),
        run: () => Promise.resolve(),
      }),
    );
  };

  /** A copy of an instance or snapshot of this host, as an operation. */
  const copy = (c: Parameters<Handler>[0], body: InstancesPost) => {
    const src = body.source;
    if (src.server || src.secret || src.operation) {
      throw new BadRequest("Copies from another server are not supported yet: copy on one host");
    }
    if (src.refresh) throw new BadRequest("Refreshing a copy is not supported yet");
    // `live` (the stock client sets it for a running source) is what a local copy does anyway:
    // the container is frozen while its rootfs is copied.
    if (!src.source) throw new BadRequest("A copy needs source.source: the instance to copy");
    const work = agent.copies.prepareCopy({
      name: body.name,
      source: src.source,
      instanceOnly: src.instance_only === true || src.container_only === true,
      config: body.config,
      devices: body.devices,
      profiles: body.profiles,
      description: body.description || undefined,
      ephemeral: body.ephemeral,
    });
    return async(c, makeOperation("Copying instance", body, work));
  };

  const get: Handler = async (c) => {
    const inst = instances.get(c.req.param("name")!);
    const depth = Math.max(1, recursion(c) >= 1 ? 2 : 1);
    return sync(c, await view(inst, depth), { etag: instances.etag(inst) });
  };

  const put: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, InstancePutSchema, { requireBody: true });
    instances.get(name);
    if (body.restore) {
      const work = agent.snapshots.prepareRestore(name, body.restore);
      return async(
        c,
        operations.start({
          description: "Restoring snapshot",
          resources: resources(name),
          run: async () => {
            await work();
          },
        }),
      );
    }
    // The update is checked and applied before answering, so a bad key is a 400 and a key that
    // cannot change live is a 409; the operation records the finished work.
    await instances.update(name, { ...body, config: body.config ?? {} }, c.req.header("if-match"));
    return async(
      c,
      operations.start({
        description: "Updating instance",
        resources: resources(name),
        run: async () => {},
      }),
    );
  };

  const patch: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, InstancePatchSchema);
    instances.get(name);
    await instances.patch(name, body, c.req.header("if-match"));
    return sync(c, {});
  };

  // A rename; the fields of a move (migration, pool, project, config overrides) are refused by the
  // schema when they ask for one.
  const rename: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, InstancePostSchema);
    const work = await instances.prepareRename(name, body.name);
    return async(
      c,
      operations.start({ description: "Renaming instance", resources: resources(name), run: work }),
    );
  };

  const remove: Handler = async (c) => {
    const name = c.req.param("name")!;
    const work = await instances.prepareDelete(name);
    return async(
      c,
      operations.start({ description: "Deleting instance", resources: resources(name), run: work }),
    );
  };

  const getState: Handler = async (c) => {
    const inst = instances.get(c.req.param("name")!);
    return sync(c, stateView(await instances.state(inst)));
  };

  const putState: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, InstanceStatePutSchema);
    const work = await instances.prepareState(name, body);
    return async(
      c,
      operations.start({
        description: `${VERBS[body.action]} instance`,
        resources: resources(name),
        run: work,
      }),
    );
  };

  const listLogs: Handler = async (c) => {
    const name = c.req.param("name")!;
    const files = await agent.instanceLogs.list(name);
    return sync(c, files.map((f) => instanceLogUrl(name, f)));
  };

  const getLog: Handler = async (c) => {
    const log = await agent.instanceLogs.read(c.req.param("name")!, c.req.param("file")!);
    return c.body(log.body, 200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(log.size),
    });
  };

  const deleteLog: Handler = async (c) => {
    await agent.instanceLogs.delete(c.req.param("name")!, c.req.param("file")!);
    return sync(c, {});
  };

  return table([
    ["GET", "/1.0/instances", "trusted", list],
    ["POST", "/1.0/instances", "trusted", create],
    ["GET", "/1.0/instances/:name", "trusted", get],
    ["PUT", "/1.0/instances/:name", "trusted", put],
    ["PATCH", "/1.0/instances/:name", "trusted", patch],
    ["POST", "/1.0/instances/:name", "trusted", rename],
    ["DELETE", "/1.0/instances/:name", "trusted", remove],
    ["GET", "/1.0/instances/:name/state", "trusted", getState],
    ["PUT", "/1.0/instances/:name/state", "trusted", putState],
    ["GET", "/1.0/instances/:name/logs", "trusted", listLogs],
    ["GET", "/1.0/instances/:name/logs/:file", "trusted", getLog],
    ["DELETE", "/1.0/instances/:name/logs/:file", "trusted", deleteLog],
  ]);
}
