/** `/1.0/storage-pools*`: the pools, their resources and their volumes (read only yet). */
import type { Agent } from "../../agent/agent.ts";
import type { PoolInfo, VolumeInfo } from "../../agent/storage.ts";
import type { StoragePool, StorageVolume } from "../../contract/responses.ts";
import { recursion } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";

const poolUrl = (name: string) => `/1.0/storage-pools/${encodeURIComponent(name)}`;
const volumeUrl = (pool: string, v: VolumeInfo) =>
  `${poolUrl(pool)}/volumes/${v.type}/${encodeURIComponent(v.name)}`;

export function storageRoutes(agent: Agent): Route[] {
  const { storage } = agent;
  const poolView = (p: PoolInfo): StoragePool => ({
    name: p.name,
    description: p.description,
    driver: p.driver,
    status: "Created",
    config: { source: p.source },
    used_by: storage.usedBy(p.name),
    locations: ["none"],
  });
  const volumeView = (v: VolumeInfo): StorageVolume => ({
    name: v.name,
    type: v.type,
    content_type: v.contentType,
    description: "",
    config: {},
    used_by: v.usedBy,
    location: "none",
    project: "default",
    created_at: v.createdAt,
  });

  const list: Handler = (c) => {
    const all = storage.list();
    if (recursion(c) === 0) return sync(c, all.map((p) => poolUrl(p.name)));
    return sync(c, all.map(poolView));
  };
  const get: Handler = (c) => sync(c, poolView(storage.get(c.req.param("pool")!)));
  const resources: Handler = (c) => {
    const space = storage.resources(c.req.param("pool")!);
    return sync(c, { space, inodes: { used: 0, total: 0 } });
  };
  const volumes: Handler = (c) => {
    const pool = c.req.param("pool")!;
    const all = storage.volumes(pool);
    if (recursion(c) === 0) return sync(c, all.map((v) => volumeUrl(pool, v)));
    return sync(c, all.map(volumeView));
  };
  const volume: Handler = (c) => {
    const { pool, type, volume } = c.req.param();
    return sync(c, volumeView(storage.volume(pool, type, volume)));
  };

  return table([
    ["GET", "/1.0/storage-pools", "trusted", list],
    ["GET", "/1.0/storage-pools/:pool", "trusted", get],
    ["GET", "/1.0/storage-pools/:pool/resources", "trusted", resources],
    ["GET", "/1.0/storage-pools/:pool/volumes", "trusted", volumes],
    ["GET", "/1.0/storage-pools/:pool/volumes/:type/:volume", "trusted", volume],
  ]);
}
