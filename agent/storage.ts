/**
 * Storage pools as the API shows them (`/1.0/storage-pools`): one `dir` pool, `default`, the
 * daemon's state directory, holding every instance's root disk and every image. Its volumes are
 * the instances (`container/NAME`, `virtual-machine/NAME`) and the images (`image/FINGERPRINT`).
 * Creating other pools (btrfs, another directory) and custom volumes are not supported yet.
 */
import { NotFound } from "../contract/errors.ts";
import { fsUsage } from "../drivers/statfs.ts";
import { imageUrl, instanceUrl, profileUrl } from "../contract/urls.ts";
import { DEFAULT_POOL } from "./profiles.ts";
import type { Devices, ProfileManager } from "./profiles.ts";
import type { Store } from "./store.ts";

export interface PoolInfo {
  name: string;
  driver: "dir";
  description: string;
  /** Where its data lives on the host. */
  source: string;
}

export interface VolumeInfo {
  name: string;
  type: "container" | "virtual-machine" | "image";
  contentType: "filesystem" | "block";
  /** The URL of what uses it. */
  usedBy: string[];
  createdAt: string;
}

export class StorageManager {
  constructor(
    private store: Store,
    private root: string,
    private profiles: Pick<ProfileManager, "expand">,
  ) {}

  list(): PoolInfo[] {
    return [{
      name: DEFAULT_POOL,
      driver: "dir",
      description: "Default outpost storage pool (the state directory)",
      source: this.root,
    }];
  }

  get(name: string): PoolInfo {
    const p = this.list().find((p) => p.name === name);
    if (!p) throw new NotFound(`Storage pool "${String(name).slice(0, 80)}" not found`);
    return p;
  }

  /** The profiles and instances whose root disk is on the pool, and the images on it. */
  usedBy(name: string): string[] {
    this.get(name);
    const onPool = (devices: Devices) =>
      Object.values(devices).some((d) => d.type === "disk" && d.pool === name);
    return [
      ...this.store.listProfiles().filter((p) => onPool(p.devices)).map((p) => profileUrl(p.name)),
      ...this.store.listInstances().filter((i) => onPool(this.profiles.expand(i).devices)).map((
        i,
      ) => instanceUrl(i.name)),
      ...this.store.listImages().map((i) => imageUrl(i.fingerprint)),
    ];
  }

  /** The space of the filesystem the pool is on (bytes), and its inodes when known. */
  resources(name: string): { total: number; used: number } {
    const p = this.get(name);
    const u = fsUsage(p.source);
    return u ? { total: u.size, used: u.size - u.free } : { total: 0, used: 0 };
  }

  volumes(name: string): VolumeInfo[] {
    this.get(name);
    const instances: VolumeInfo[] = this.store.listInstances().map((i) => ({
      name: i.name,
      type: i.type,
      contentType: i.type === "virtual-machine" ? "block" : "filesystem",
      usedBy: [instanceUrl(i.name)],
      createdAt: i.created_at,
    }));
    const images: VolumeInfo[] = this.store.listImages().map((i) => ({
      name: i.fingerprint,
      type: "image",
      contentType: i.type === "virtual-machine" ? "block" : "filesystem",
      usedBy: [imageUrl(i.fingerprint)],
      createdAt: i.uploaded_at,
    }));
    return [...instances, ...images];
  }

  volume(name: string, type: string, volume: string): VolumeInfo {
    const v = this.volumes(name).find((v) => v.type === type && v.name === volume);
    if (!v) {
      throw new NotFound(
        `Storage volume "${String(type).slice(0, 20)}/${
          String(volume).slice(0, 80)
        }" not found in pool "${name}"`,
      );
    }
    return v;
  }
}
