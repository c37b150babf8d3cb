/** `/1.0/storage-pools*`: pools (list, create, show, change, delete), resources and volumes. */
import type { Agent } from "../../agent/agent.ts";
import type { PoolInfo, VolumeInfo } from "../../agent/storage.ts";
import { NotFound } from "../../contract/errors.ts";
import type { StoragePool, StorageVolume } from "../../contract/responses.ts";
import {
  StoragePoolsPostSchema,
  StoragePutSchema,
  StorageVolumesPostSchema,
} from "../../contract/schemas.ts";
import { storagePoolUrl, storageVolumeUrl } from "../../contract/urls.ts";
import { parseBody, recursion } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";

const volumeUrl = (pool: string, v: VolumeInfo) => storageVolumeUrl(pool, v.type, v.name);

export function storageRoutes(agent: Agent): Route[] {
  const { storage } = agent;
  const poolView = (p: PoolInfo): StoragePool => ({
    name: p.name,
    description: p.description,
    driver: p.driver,
    status: "Created",
    config: p.config,
    used_by: storage.usedBy(p.name),
    locations: ["none"],
  });
  const volumeView = (v: VolumeInfo): StorageVolume => ({
    name: v.name,
    type: v.type,
    content_type: v.contentType,
    description: v.description,
    config: v.config,
    used_by: v.usedBy,
    location: "none",
    project: "default",
    created_at: v.createdAt,
  });

  const list: Handler = (c) => {
    const all = storage.list();
    if (recursion(c) === 0) return sync(c, all.map((p) => storagePoolUrl(p.name)));
    return sync(c, all.map(poolView));
  };
  const create: Handler = async (c) => {
    const body = await parseBody(c, StoragePoolsPostSchema, { requireBody: true });
    const p = await storage.create(body);
    c.header("Location", storagePoolUrl(p.name));
    return sync(c, null, { status: 201 });
  };
  const get: Handler = (c) => sync(c, poolView(storage.get(c.req.param("pool")!)));
  /** PUT and PATCH alike: only the description may change. */
  const update: Handler = async (c) => {
    const body = await parseBody(c, StoragePutSchema);
    storage.update(c.req.param("pool")!, body);
    return sync(c, {});
  };
  const remove: Handler = async (c) => {
    await storage.delete(c.req.param("pool")!);
    return sync(c, {});
  };
  const resources: Handler = (c) => {
    const space = storage.resources(c.req.param("pool")!);
    return sync(c, { space, inodes: { used: 0, total: 0 } });
  };
  const volumes: Handler = (c) => {
    const pool = c.req.param("pool")!;
    const type = c.req.param("type");
    const all = storage.volumes(pool).filter((v) => !type || v.type === type);
    if (recursion(c) === 0) return sync(c, all.map((v) => volumeUrl(pool, v)));
    return sync(c, all.map(volumeView));
  };
  const createVolume: Handler = async (c) => {
    const pool = c.req.param("pool")!;
    const body = await parseBody(c, StorageVolumesPostSchema, { requireBody: true });
    const type = c.req.param("type") ?? body.type;
    const v = await storage.createVolume(pool, { ...body, type });
    c.header("Location", volumeUrl(pool, v));
    return sync(c, null, { status: 201 });
  };
  const volume: Handler = (c) => {
    const { pool, type, volume } = c.req.param();
    return sync(c, volumeView(storage.volume(pool, type, volume)));
  };
  /** Only custom volumes change or go; an instance's or an image's goes with it. */
  const custom = (type: string, volume: string) => {
    if (type !== "custom") {
      throw new NotFound(`Only custom volumes can be changed here, not "${type}/${volume}"`);
    }
  };
  const updateVolume: Handler = async (c) => {
    const { pool, type, volume } = c.req.param();
    custom(type, volume);
    const body = await parseBody(c, StoragePutSchema);
    storage.updateVolume(pool, volume, body);
    return sync(c, {});
  };
  const removeVolume: Handler = async (c) => {
    const { pool, type, volume } = c.req.param();
    custom(type, volume);
    await storage.deleteVolume(pool, volume);
    return sync(c, {});
  };

  return table([
    ["GET", "/1.0/storage-pools", "trusted", list],
    ["POST", "/1.0/storage-pools", "trusted", create],
    ["GET", "/1.0/storage-pools/:pool", "trusted", get],
    ["PUT", "/1.0/storage-pools/:pool", "trusted", update],
    ["PATCH", "/1.0/storage-pools/:pool", "trusted", update],
    ["DELETE", "/1.0/storage-pools/:pool", "trusted", remove],
    ["GET", "/1.0/storage-pools/:pool/resources", "trusted", resources],
    ["GET", "/1.0/storage-pools/:pool/volumes", "trusted", volumes],
    ["POST", "/1.0/storage-pools/:pool/volumes", "trusted", createVolume],
    ["GET", "/1.0/storage-pools/:pool/volumes/:type", "trusted", volumes],
    ["POST", "/1.0/storage-pools/:pool/volumes/:type", "trusted", createVolume],
    ["GET", "/1.0/storage-pools/:pool/volumes/:type/:volume", "trusted", volume],
    ["PUT", "/1.0/storage-pools/:pool/volumes/:type/:volume", "trusted", updateVolume],
    ["PATCH", "/1.0/storage-pools/:pool/volumes/:type/:volume", "trusted", updateVolume],
    ["DELETE", "/1.0/storage-pools/:pool/volumes/:type/:volume", "trusted", removeVolume],
  ]);
}
