/** `/1.0/instances/{name}/backups*`: list, take, show, export and delete an instance's backups. */
import type { Agent } from "../../agent/agent.ts";
import type { BackupRecord } from "../../agent/backups.ts";
import { parseExpiry } from "../../agent/snapshots.ts";
import { BackupPostSchema, InstanceBackupsPostSchema } from "../../contract/schemas.ts";
import { instanceUrl } from "../../contract/urls.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { async, sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { resources } from "./instances.ts";

const backupUrl = (name: string, backup: string) =>
  `${instanceUrl(name)}/backups/${encodeURIComponent(backup)}`;

export function backupRoutes(agent: Agent): Route[] {
  const { backups, operations } = agent;
  const view = (b: BackupRecord) => ({
    name: b.name,
    created_at: b.created_at,
    expires_at: b.expires_at,
    instance_only: b.instance_only,
    container_only: b.instance_only,
    optimized_storage: false,
  });

  const list: Handler = async (c) => {
    const name = c.req.param("name")!;
    const all = await backups.list(name);
    if (recursion(c) === 0) return sync(c, all.map((b) => backupUrl(name, b.name)));
    return sync(c, all.map(view));
  };

  const create: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, InstanceBackupsPostSchema);
    const { name: backup, run } = await backups.prepareCreate(name, {
      name: body.name,
      instanceOnly: body.instance_only || body.container_only,
      expiresAt: body.expires_at ? parseExpiry(body.expires_at) : undefined,
    });
    return async(
      c,
      operations.start({
        description: "Backing up instance",
        // The stock clients read the backup's name from here: LXD 5.0's strips "/1.0/backups/",
        // newer ones take the last path segment. This form serves both.
        resources: { ...resources(name), backups: [`/1.0/backups/${encodeURIComponent(backup)}`] },
        run: async () => {
          await run();
        },
      }),
    );
  };

  const get: Handler = async (c) => {
    const { name, backup } = c.req.param();
    return sync(c, view(await backups.get(name, backup)));
  };

  const remove: Handler = async (c) => {
    const { name, backup } = c.req.param();
    await backups.delete(name, backup);
    return sync(c, {});
  };

  /** Incus answers a rename with an operation. */
  const rename: Handler = async (c) => {
    const { name, backup } = c.req.param();
    const body = await parseBody(c, BackupPostSchema, { requireBody: true });
    await backups.get(name, backup);
    return async(
      c,
      operations.start({
        description: "Renaming instance backup",
        resources: resources(name),
        run: async () => {
          await backups.renameBackup(name, backup, body.name);
        },
      }),
    );
  };

  const exportFile: Handler = async (c) => {
    const { name, backup } = c.req.param();
    const { size, body } = await backups.export(name, backup);
    return c.body(body, 200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(size),
      "Content-Disposition": `attachment; filename=${name}-${backup}.tar.gz`,
    });
  };

  return table([
    ["GET", "/1.0/instances/:name/backups", "trusted", list],
    ["POST", "/1.0/instances/:name/backups", "trusted", create],
    ["GET", "/1.0/instances/:name/backups/:backup", "trusted", get],
    ["POST", "/1.0/instances/:name/backups/:backup", "trusted", rename],
    ["DELETE", "/1.0/instances/:name/backups/:backup", "trusted", remove],
    ["GET", "/1.0/instances/:name/backups/:backup/export", "trusted", exportFile],
  ]);
}
