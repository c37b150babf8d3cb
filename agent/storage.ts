/**
 * Storage pools (`/1.0/storage-pools`) and their custom volumes. `default` is a `dir` pool in the
 * daemon's state directory and always exists; other pools are `dir` pools (a directory anywhere)
 * or `btrfs` pools (a directory on btrfs, or a loop file the daemon makes, formats and mounts).
 * An instance's storage is on the pool of its root disk; each pool also keeps the unpacked images
 * its containers are cloned from, and custom volumes (a directory, or a qcow2 disk for a VM).
 */
import { existsSync } from "node:fs";
import { basename, dirname, join, normalize } from "node:path";
import { z } from "zod";
import { BadRequest, Conflict, NotFound } from "../contract/errors.ts";
import { parseByteSize } from "../contract/units.ts";
import {
  imageUrl,
  instanceUrl,
  profileUrl,
  storagePoolUrl,
  storageVolumeUrl,
} from "../contract/urls.ts";
import { entryNames, type PoolPlan } from "../drivers/driver.ts";
import { isRootDisk, STORAGE_NAME } from "../drivers/device/device.ts";
import { hostIdMap } from "../drivers/lxc/idmap.ts";
import type { Runner } from "../drivers/runner.ts";
import { fsUsage } from "../drivers/statfs.ts";
import { fsTypeOf, kindMode, type PoolDriverName, PoolStorage } from "../drivers/storage/pool.ts";
import type { EventBus } from "./events.ts";
import { KeyedLock } from "./locks.ts";
import type { Paths } from "./paths.ts";
import { DEFAULT_POOL } from "./profiles.ts";
import type { Devices, ProfileManager } from "./profiles.ts";
import type { PoolRecord, Store, VolumeRecord } from "./store.ts";

export interface PoolInfo {
  name: string;
  driver: PoolDriverName;
  description: string;
  config: Record<string, string>;
  /** Where its data lives on the host. */
  path: string;
}

export type VolumeType = "container" | "virtual-machine" | "image" | "custom";
export type ContentType = "filesystem" | "block";

export interface VolumeInfo {
  name: string;
  type: VolumeType;
  contentType: ContentType;
  description: string;
  config: Record<string, string>;
  /** The URL of what uses it. */
  usedBy: string[];
  createdAt: string;
}

/** How many pools and custom volumes a host may have. */
const MAX_POOLS = 32;
const MAX_VOLUMES = 1024;
/** A loop file's size when none is given, and the least one may be. */
const DEFAULT_LOOP_SIZE = "5GiB";
const MIN_LOOP_BYTES = 256 * 2 ** 20;
/** A block volume's size when none is given. */
const DEFAULT_BLOCK_SIZE = "10GiB";

const byteSize = z.string().refine((v) => (parseByteSize(v) ?? 0) > 0, {
  error: 'expected a size such as "10GiB"',
});

/** The keys a pool's config takes. */
const POOL_KEYS: Record<string, { schema: z.ZodType<string>; doc: string }> = {
  source: {
    schema: z.string(),
    doc:
      "Where the pool keeps its data: a directory (`dir`, or `btrfs` on a btrfs filesystem); empty: a directory in the state dir, or for `btrfs` a loop file the daemon makes",
  },
  size: { schema: byteSize, doc: "The size of a `btrfs` pool's loop file (default 5GiB)" },
};

/** The keys a custom volume's config takes. */
const VOLUME_KEYS: Record<string, { schema: z.ZodType<string>; doc: string }> = {
  size: { schema: byteSize, doc: "The size of a block volume (default 10GiB)" },
};

// deno-lint-ignore no-control-regex
const shown = (s: string) => String(s).replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 80);

function checkName(what: string, name: string): void {
  if (!STORAGE_NAME.test(name)) {
    throw new BadRequest(
      `Invalid ${what} name "${
        shown(name)
      }": use 1 to 64 letters, digits and "._-", starting with a letter or digit`,
    );
  }
}

function checkKeys(
  what: string,
  keys: Record<string, { schema: z.ZodType<string> }>,
  config: Record<string, string>,
): void {
  for (const [k, v] of Object.entries(config)) {
    const decl = keys[k];
    if (!decl) throw new BadRequest(`Unknown ${what} key "${shown(k)}"`);
    const r = decl.schema.safeParse(v);
    if (!r.success) {
      throw new BadRequest(
        `Invalid ${what} key "${k}" "${shown(v)}": ${r.error.issues[0]?.message}`,
      );
    }
  }
}

export interface StorageDeps {
  store: Store;
  paths: Paths;
  runner: Runner;
  events: EventBus;
  profiles: Pick<ProfileManager, "expand">;
  log: (msg: string) => void;
}

export class StorageManager {
  #storage = new Map<string, PoolStorage>();
  #locks = new KeyedLock();
  /** Pools being created (their names are taken). */
  #creating = new Set<string>();

  constructor(private deps: StorageDeps) {}

  /** The host gid unprivileged containers' root has (none where the host has no id range). */
  #customGid(): number | undefined {
    try {
      return hostIdMap().gid.hostBase;
    } catch {
      return undefined;
    }
  }

  #default(): PoolInfo {
    return {
      name: DEFAULT_POOL,
      driver: "dir",
      description: "Default outpost storage pool (the state directory)",
      config: { source: this.deps.paths.root },
      path: this.deps.paths.root,
    };
  }

  #info(r: PoolRecord): PoolInfo {
    return {
      name: r.name,
      driver: r.driver,
      description: r.description,
      config: r.config,
      path: this.#layoutOf(r).path,
    };
  }

  #layoutOf(r: PoolRecord): { path: string; loopFile?: string } {
    const source = r.config.source ?? "";
    if (r.driver === "btrfs" && source.startsWith(`${this.deps.paths.disks}/`)) {
      return { path: this.deps.paths.storagePool(r.name), loopFile: source };
    }
    return { path: source || this.deps.paths.storagePool(r.name) };
  }

  list(): PoolInfo[] {
    return [this.#default(), ...this.deps.store.listPools().map((r) => this.#info(r))];
  }

  get(name: string): PoolInfo {
    if (name === DEFAULT_POOL) return this.#default();
    const r = this.deps.store.getPool(name);
    if (!r) throw new NotFound(`Storage pool "${shown(name)}" not found`);
    return this.#info(r);
  }

  names(): Set<string> {
    return new Set(this.list().map((p) => p.name));
  }

  /** The volume operations of a pool. */
  storage(name: string): PoolStorage {
    let s = this.#storage.get(name);
    if (s) return s;
    const p = this.get(name);
    if (name === DEFAULT_POOL) {
      const { paths } = this.deps;
      s = new PoolStorage({
        driver: "dir",
        path: paths.root,
        dirs: {
          containers: paths.containers,
          "virtual-machines": paths.vms,
          images: paths.imageVolumes,
          custom: paths.customVolumes,
        },
        customGid: this.#customGid(),
      }, this.deps.runner);
    } else {
      const r = this.deps.store.getPool(name)!;
      s = new PoolStorage(
        { driver: p.driver, ...this.#layoutOf(r), customGid: this.#customGid() },
        this.deps.runner,
      );
    }
    this.#storage.set(name, s);
    return s;
  }

  /** The pool of the root disk among an instance's expanded devices. */
  plan(devices: Readonly<Devices>): PoolPlan | undefined {
    const root = Object.values(devices).find((d) => isRootDisk(d));
    if (!root?.pool) return undefined;
    try {
      return { name: root.pool, storage: this.storage(root.pool) };
    } catch {
      return undefined;
    }
  }

  /** Start-up: makes the default pool's dirs, mounts pools' loop files, drops what a kill left. */
  async restore(): Promise<void> {
    const { paths, store, log } = this.deps;
    const defaults = this.storage(DEFAULT_POOL);
    for (const kind of ["images", "custom"] as const) {
      await Deno.mkdir(defaults.dir(kind), { recursive: true, mode: kindMode(kind) });
      await defaults.guard(kind);
    }
    const known = new Set(store.listPools().map((p) => p.name));
    for (const r of store.listPools()) {
      await this.storage(r.name).mount().catch((err) =>
        log(`storage pool ${r.name}: ${err instanceof Error ? err.message : err}`)
      );
    }
    // A create killed before its record: its mount and loop file go.
    for (const name of await entryNames(join(paths.root, "storage-pools"))) {
      if (known.has(name)) continue;
      const loopFile = join(paths.disks, `${name}.img`);
      await new PoolStorage(
        { driver: "btrfs", path: paths.storagePool(name), loopFile },
        this.deps.runner,
      ).delete(true).catch((err) => log(`storage pool ${name}: ${err}`));
      await Deno.remove(paths.storagePool(name), { recursive: true }).catch(() => {});
      log(`storage: removed pool dir ${name} (left by an interrupted create)`);
    }
    for (const file of await entryNames(paths.disks)) {
      if (known.has(file.replace(/\.img$/, ""))) continue;
      await Deno.remove(join(paths.disks, file)).catch(() => {});
      log(`storage: removed loop file ${file} (left by an interrupted create)`);
    }
    // Image volumes half made when a kill came.
    for (const p of this.list()) {
      const dir = this.storage(p.name).dir("images");
      for (const name of await entryNames(dir)) {
        if (name.startsWith(".tmp-")) await this.storage(p.name).removeVolume(join(dir, name));
      }
    }
  }

  /** Creates a pool (checked first: a bad request makes nothing). */
  async create(req: {
    name: string;
    driver: string;
    description: string;
    config: Record<string, string>;
  }): Promise<PoolInfo> {
    checkName("storage pool", req.name);
    if (req.driver !== "dir" && req.driver !== "btrfs") {
      throw new BadRequest(
        `Storage driver "${shown(req.driver)}" is not supported: use "dir" or "btrfs"`,
      );
    }
    const driver: PoolDriverName = req.driver;
    checkKeys("storage pool", POOL_KEYS, req.config);
    if (this.names().has(req.name) || this.#creating.has(req.name)) {
      throw new Conflict(`Storage pool "${req.name}" already exists`);
    }
    if (this.deps.store.listPools().length + this.#creating.size >= MAX_POOLS - 1) {
      throw new BadRequest(`A host may have at most ${MAX_POOLS} storage pools`);
    }
    const config = { ...req.config };
    let loopBytes = 0;
    if (config.source) {
      const source = await this.#checkSource(config.source, driver);
      config.source = source;
      if (config.size) throw new BadRequest(`"size" is for a pool with a loop file (no source)`);
    } else if (driver === "btrfs") {
      config.size ??= DEFAULT_LOOP_SIZE;
      loopBytes = parseByteSize(config.size)!;
      const room = fsUsage(this.deps.paths.root);
      if (loopBytes < MIN_LOOP_BYTES || (room && loopBytes > room.size)) {
        throw new BadRequest(
          `A loop file's size must be between 256MiB and the size of the state dir's filesystem`,
        );
      }
      config.source = join(this.deps.paths.disks, `${req.name}.img`);
    } else if (config.size) {
      throw new BadRequest(`"size" is for a btrfs pool's loop file`);
    }
    const record: PoolRecord = {
      name: req.name,
      driver,
      description: req.description,
      config,
      created_at: new Date().toISOString(),
    };
    this.#creating.add(req.name);
    try {
      const storage = new PoolStorage(
        { driver, ...this.#layoutOf(record), customGid: this.#customGid() },
        this.deps.runner,
      );
      try {
        await storage.create(loopBytes);
        this.deps.store.putPool(record);
      } catch (err) {
        await storage.delete(!record.config.source || !!loopBytes).catch(() => {});
        throw err;
      }
    } finally {
      this.#creating.delete(req.name);
    }
    this.deps.events.lifecycle("storage-pool-created", storagePoolUrl(req.name));
    return this.#info(record);
  }

  /** A given source: an absolute directory outside the state dir, empty if it exists. */
  async #checkSource(source: string, driver: PoolDriverName): Promise<string> {
    // deno-lint-ignore no-control-regex
    if (!source.startsWith("/") || /[\u0000-\u001f\u007f]/.test(source) || source.length > 1024) {
      throw new BadRequest(`Invalid source "${shown(source)}": expected an absolute directory`);
    }
    const path = normalize(source).replace(/\/+$/, "");
    const root = await Deno.realPath(this.deps.paths.root);
    // Checked as given and with its symlinks resolved (its parent's, when it is missing).
    const real = await Deno.realPath(path).catch(() =>
      Deno.realPath(dirname(path)).then((p) => join(p, basename(path)), () => path)
    );
    for (const p of [path, real]) {
      if (
        p === "" || p === "/" || p === root || p.startsWith(`${root}/`) || root.startsWith(`${p}/`)
      ) {
        throw new BadRequest(
          `Invalid source "${
            shown(source)
          }": a pool cannot be the state directory, inside it or above it`,
        );
      }
    }
    const st = await Deno.stat(path).catch(() => undefined);
    if (st && !st.isDirectory) throw new BadRequest(`Source ${shown(path)} is not a directory`);
    if (st) {
      for await (const _ of Deno.readDir(path)) {
        throw new BadRequest(`Source ${shown(path)} is not empty`);
      }
    }
    if (driver === "btrfs") {
      if (!st) throw new BadRequest(`Source ${shown(path)} does not exist`);
      if ((await fsTypeOf(this.deps.runner, path)) !== "btrfs") {
        throw new BadRequest(
          `Source ${
            shown(path)
          } is not on btrfs: give a directory on btrfs, or no source for a loop file`,
        );
      }
    }
    return path;
  }

  /** Changes a pool's description; its config cannot change once made. */
  update(name: string, req: { description?: string; config?: Record<string, string> }): void {
    if (name === DEFAULT_POOL) {
      throw new BadRequest(`The default pool is the state directory: it cannot be changed`);
    }
    const r = this.deps.store.getPool(name);
    if (!r) throw new NotFound(`Storage pool "${shown(name)}" not found`);
    if (req.config) {
      checkKeys("storage pool", POOL_KEYS, req.config);
      for (const k of new Set([...Object.keys(req.config), ...Object.keys(r.config)])) {
        if (req.config[k] !== undefined && req.config[k] !== r.config[k]) {
          throw new BadRequest(`Storage pool key "${k}" cannot be changed once the pool exists`);
        }
      }
    }
    this.deps.store.putPool({ ...r, description: req.description ?? r.description });
    this.deps.events.lifecycle("storage-pool-updated", storagePoolUrl(name));
  }

  /** Deletes an unused pool and everything it made (its image copies included). */
  async delete(name: string): Promise<void> {
    if (name === DEFAULT_POOL) {
      throw new BadRequest(`The default pool is the state directory: it cannot be deleted`);
    }
    await this.#locks.run(name, async () => {
      const r = this.deps.store.getPool(name);
      if (!r) throw new NotFound(`Storage pool "${shown(name)}" not found`);
      const users = this.usedBy(name).filter((u) => !u.startsWith("/1.0/images/"));
      if (users.length > 0) {
        throw new BadRequest(
          `Storage pool "${name}" is in use by ${users.slice(0, 5).join(", ")}${
            users.length > 5 ? "..." : ""
          }`,
        );
      }
      // Storage first: a pool whose loop file cannot be unmounted yet stays, to be deleted again.
      await this.storage(name).delete(true);
      this.deps.store.deletePool(name);
      this.#storage.delete(name);
      this.deps.events.lifecycle("storage-pool-deleted", storagePoolUrl(name));
    });
  }

  /** The profiles and instances whose root disk is on the pool, its images and custom volumes. */
  usedBy(name: string): string[] {
    this.get(name);
    const { store, profiles } = this.deps;
    const onPool = (devices: Devices) =>
      Object.values(devices).some((d) => d.type === "disk" && d.pool === name);
    return [
      ...store.listProfiles().filter((p) => onPool(p.devices)).map((p) => profileUrl(p.name)),
      ...store.listInstances().filter((i) => onPool(profiles.expand(i).devices)).map((i) =>
        instanceUrl(i.name)
      ),
      ...this.#images(name).map((fp) => imageUrl(fp)),
      ...store.listVolumes(name).map((v) => storageVolumeUrl(name, "custom", v.name)),
    ];
  }

  /** The images on a pool: all of them on the default one, those unpacked there on others. */
  #images(pool: string): string[] {
    const all = this.deps.store.listImages().map((i) => i.fingerprint);
    if (pool === DEFAULT_POOL) return all;
    const dir = this.storage(pool).dir("images");
    return all.filter((fp) => existsSync(join(dir, fp)));
  }

  /** The space of the filesystem the pool is on (bytes). */
  resources(name: string): { total: number; used: number } {
    const u = fsUsage(this.get(name).path);
    return u ? { total: u.size, used: u.size - u.free } : { total: 0, used: 0 };
  }

  volumes(pool: string): VolumeInfo[] {
    this.get(pool);
    const { store, profiles } = this.deps;
    const instances: VolumeInfo[] = store.listInstances()
      .filter((i) => this.plan(profiles.expand(i).devices)?.name === pool)
      .map((i) => ({
        name: i.name,
        type: i.type,
        contentType: i.type === "virtual-machine" ? "block" : "filesystem",
        description: "",
        config: {},
        usedBy: [instanceUrl(i.name)],
        createdAt: i.created_at,
      }));
    const images = new Set(this.#images(pool));
    const imageVolumes: VolumeInfo[] = store.listImages().filter((i) => images.has(i.fingerprint))
      .map((i) => ({
        name: i.fingerprint,
        type: "image",
        contentType: i.type === "virtual-machine" ? "block" : "filesystem",
        description: "",
        config: {},
        usedBy: [imageUrl(i.fingerprint)],
        createdAt: i.uploaded_at,
      }));
    const custom = store.listVolumes(pool).map((v) => this.#custom(v));
    return [...instances, ...imageVolumes, ...custom];
  }

  #custom(v: VolumeRecord): VolumeInfo {
    return {
      name: v.name,
      type: "custom",
      contentType: v.content_type,
      description: v.description,
      config: v.config,
      usedBy: this.volumeUsers(v.pool, v.name),
      createdAt: v.created_at,
    };
  }

  volume(pool: string, type: string, volume: string): VolumeInfo {
    const v = this.volumes(pool).find((v) => v.type === type && v.name === volume);
    if (!v) {
      throw new NotFound(
        `Storage volume "${shown(type)}/${shown(volume)}" not found in pool "${shown(pool)}"`,
      );
    }
    return v;
  }

  /** Where a custom volume lives: its directory, and its disk file when it is a block volume. */
  volumePath(pool: string, name: string): { dir: string; file?: string; contentType: ContentType } {
    const v = this.deps.store.getVolume(pool, name);
    if (!v) throw new NotFound(`Custom volume "${shown(name)}" not found in pool "${shown(pool)}"`);
    const dir = join(this.storage(pool).dir("custom"), name);
    return v.content_type === "block"
      ? { dir, file: join(dir, "root.qcow2"), contentType: "block" }
      : { dir, contentType: "filesystem" };
  }

  /** The custom volumes of every pool as `pool/name` → content type (for device checks). */
  customVolumes(): Map<string, ContentType> {
    return new Map(
      this.deps.store.listVolumes().map((v) => [`${v.pool}/${v.name}`, v.content_type]),
    );
  }

  /** The profiles and instances with a disk device on the custom volume. */
  volumeUsers(pool: string, name: string): string[] {
    const { store } = this.deps;
    const uses = (devices: Devices) =>
      Object.values(devices).some((d) =>
        d.type === "disk" && d.pool === pool && d.source === name && !isRootDisk(d)
      );
    return [
      ...store.listProfiles().filter((p) => uses(p.devices)).map((p) => profileUrl(p.name)),
      ...store.listInstances().filter((i) => uses(i.devices)).map((i) => instanceUrl(i.name)),
    ];
  }

  async createVolume(pool: string, req: {
    name: string;
    type: string;
    content_type: string;
    description: string;
    config: Record<string, string>;
  }): Promise<VolumeInfo> {
    this.get(pool);
    checkName("storage volume", req.name);
    if (req.type !== "custom") {
      throw new BadRequest(`Only custom volumes can be created (not "${shown(req.type)}")`);
    }
    if (req.content_type !== "filesystem" && req.content_type !== "block") {
      throw new BadRequest(
        `Invalid content type "${shown(req.content_type)}": use "filesystem" or "block"`,
      );
    }
    const contentType: ContentType = req.content_type;
    checkKeys("storage volume", VOLUME_KEYS, req.config);
    const config = { ...req.config };
    if (contentType === "block") {
      config.size ??= DEFAULT_BLOCK_SIZE;
      // A disk larger than the pool's filesystem would let a guest fill the host's disk.
      const room = fsUsage(this.get(pool).path);
      if (room && parseByteSize(config.size)! > room.size) {
        throw new BadRequest(
          `A block volume of ${config.size} is larger than pool "${pool}"'s filesystem`,
        );
      }
    } else if (config.size) {
      throw new BadRequest(
        `"size" is for block volumes: a filesystem volume shares its pool's space`,
      );
    }
    return await this.#locks.run(pool, async () => {
      if (this.deps.store.getVolume(pool, req.name)) {
        throw new Conflict(`Storage volume "${req.name}" already exists in pool "${pool}"`);
      }
      if (this.deps.store.listVolumes().length >= MAX_VOLUMES) {
        throw new BadRequest(`A host may have at most ${MAX_VOLUMES} custom volumes`);
      }
      const storage = this.storage(pool);
      const dir = join(storage.dir("custom"), req.name);
      await Deno.mkdir(storage.dir("custom"), { recursive: true, mode: kindMode("custom") });
      if (existsSync(dir)) await storage.removeVolume(dir); // left by a killed create
      try {
        await storage.makeVolume(dir);
        if (contentType === "block") {
          await Deno.chmod(dir, 0o700);
          await storage.makeDisk(join(dir, "root.qcow2"), parseByteSize(config.size)!);
        } else {
          await Deno.chmod(dir, 0o755);
        }
        const record: VolumeRecord = {
          pool,
          name: req.name,
          content_type: contentType,
          description: req.description,
          config,
          created_at: new Date().toISOString(),
        };
        this.deps.store.putVolume(record);
        this.deps.events.lifecycle(
          "storage-volume-created",
          storageVolumeUrl(pool, "custom", req.name),
        );
        return this.#custom(record);
      } catch (err) {
        await storage.removeVolume(dir).catch(() => {});
        throw err;
      }
    });
  }

  updateVolume(
    pool: string,
    name: string,
    req: { description?: string; config?: Record<string, string> },
  ): void {
    const v = this.deps.store.getVolume(pool, name);
    if (!v) throw new NotFound(`Custom volume "${shown(name)}" not found in pool "${shown(pool)}"`);
    if (req.config) {
      checkKeys("storage volume", VOLUME_KEYS, req.config);
      for (const k of new Set([...Object.keys(req.config), ...Object.keys(v.config)])) {
        if (req.config[k] !== undefined && req.config[k] !== v.config[k]) {
          throw new BadRequest(`Storage volume key "${k}" cannot be changed yet`);
        }
      }
    }
    this.deps.store.putVolume({ ...v, description: req.description ?? v.description });
    this.deps.events.lifecycle("storage-volume-updated", storageVolumeUrl(pool, "custom", name));
  }

  async deleteVolume(pool: string, name: string): Promise<void> {
    await this.#locks.run(pool, async () => {
      const { dir } = this.volumePath(pool, name);
      const users = this.volumeUsers(pool, name);
      if (users.length > 0) {
        throw new BadRequest(
          `Storage volume "${name}" is in use by ${users.slice(0, 5).join(", ")}: detach it first`,
        );
      }
      this.deps.store.deleteVolume(pool, name);
      await this.storage(pool).removeVolume(dir);
      this.deps.events.lifecycle("storage-volume-deleted", storageVolumeUrl(pool, "custom", name));
    });
  }

  /** Removes an image's unpacked copies from every pool (the image is being deleted). */
  async forgetImage(fingerprint: string): Promise<void> {
    for (const p of this.list()) {
      const storage = this.storage(p.name);
      await storage.removeVolume(join(storage.dir("images"), fingerprint)).catch((err) =>
        this.deps.log(`storage pool ${p.name}: removing image ${fingerprint.slice(0, 12)}: ${err}`)
      );
    }
  }
}
