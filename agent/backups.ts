/**
 * Instance backups (`/1.0/instances/{name}/backups`, `outpost export`/`import`, the stock `lxc
 * export`/`lxc import`): a tarball in Incus's layout (`backup/index.yaml` with the instance and
 * its snapshots; a container's `backup/container/rootfs/`, `backup/snapshots/NAME/rootfs/`; a VM's
 * raw disks and config files, drivers/qemu/backup.ts), gzip-checksummed. A running container is
 * frozen while it is read; a VM is backed up stopped (its QEMU holds the disk), a running one is
 * refused. A backup is kept as `STATE/backups/INSTANCE/NAME.tar.gz` beside a small JSON record
 * until it is deleted (or its instance is). An import reads the whole file first (a truncated or
 * corrupt one fails its gzip check), refuses device nodes, ids outside the container's range, paths
 * outside `backup/` (and for a VM anything but files and directories where its layout puts them),
 * and creates nothing until all of it is known good.
 */
import { join } from "node:path";
import { z } from "zod";
import {
  BadRequest,
  Conflict,
  InvalidState,
  NotFound,
  PayloadTooLarge,
} from "../contract/errors.ts";
import { checkInstanceName } from "../contract/names.ts";
import { instanceUrl } from "../contract/urls.ts";
import { type BackupMember, checkVmBackupMembers } from "../drivers/qemu/backup.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { Runner } from "../drivers/runner.ts";
import type { EventBus } from "./events.ts";
import { type FileStream, fileStream } from "./file_stream.ts";
import type { InstanceManager } from "./instances.ts";
import { checkSnapshotName, NEVER } from "./snapshots.ts";
import type { InstanceRecord, SnapshotRecord, Store } from "./store.ts";

/** Backup uploads larger than this are refused (streamed to disk, never held). */
export const MAX_BACKUP_BYTES = 16 * 2 ** 30;
/** The largest `backup/index.yaml` read (an instance and its snapshots take a few KiB). */
const MAX_INDEX_BYTES = 4 * 2 ** 20;
/** Ids a backup's files may have: an unprivileged container's range. */
const ID_RANGE = 65536;

const stringMap = z.record(z.string(), z.string());
const devices = z.record(z.string(), stringMap);
/** What `backup/index.yaml` holds (outpost writes JSON, which is YAML). */
const IndexSchema = z.object({
  name: z.string(),
  // Older LXD backups name no type: they are containers'.
  type: z.enum(["container", "virtual-machine"], {
    error: "only container and virtual-machine backups are supported",
  }).default("container"),
  snapshots: z.array(z.string()).default([]),
  config: z.object({
    container: z.object({
      architecture: z.string(),
      config: stringMap,
      devices: devices.default({}),
      profiles: z.array(z.string()).default([]),
      description: z.string().default(""),
      ephemeral: z.boolean().default(false),
    }),
    snapshots: z.array(z.object({
      name: z.string(),
      config: stringMap,
      devices: devices.default({}),
      profiles: z.array(z.string()).default([]),
      description: z.string().default(""),
      created_at: z.string(),
      expires_at: z.string().default(NEVER),
    })).default([]),
  }),
});
type Index = z.infer<typeof IndexSchema>;

const RecordSchema = z.object({
  name: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
  instance_only: z.boolean(),
});
export type BackupRecord = z.infer<typeof RecordSchema>;

export interface BackupDeps {
  store: Store;
  instances: InstanceManager;
  drivers: DriverRegistry;
  events: EventBus;
  runner: Runner;
  /** The directory of an instance's backups; `dir("")` is where imports are unpacked. */
  dir: (instance: string) => string;
}

export class BackupManager {
  #creating = new Set<string>();

  constructor(private deps: BackupDeps) {}

  async list(instance: string): Promise<BackupRecord[]> {
    this.deps.instances.get(instance);
    const out: BackupRecord[] = [];
    try {
      for await (const e of Deno.readDir(this.deps.dir(instance))) {
        if (!e.name.endsWith(".json")) continue;
        const rec = RecordSchema.safeParse(
          JSON.parse(await Deno.readTextFile(join(this.deps.dir(instance), e.name))),
        );
        if (rec.success) out.push(rec.data);
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return out.sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  async get(instance: string, name: string): Promise<BackupRecord> {
    const rec = (await this.list(instance)).find((b) => b.name === name);
    if (!rec) throw new NotFound(`Backup "${name}" of instance "${instance}" not found`);
    return rec;
  }

  /** Checks a backup request (400, 404, 409); answers the backup's name and the work. */
  async prepareCreate(
    instance: string,
    req: { name: string; instanceOnly: boolean; expiresAt?: string },
  ): Promise<{ name: string; run: () => Promise<BackupRecord> }> {
    const inst = this.deps.instances.get(instance);
    const taken = (await this.list(instance)).map((b) => b.name);
    let name = req.name;
    if (name === "") {
      let n = 0;
      while (taken.includes(`backup${n}`) || this.#creating.has(`${instance}/backup${n}`)) n++;
      name = `backup${n}`;
    }
    checkSnapshotName(name);
    if (taken.includes(name) || this.#creating.has(`${instance}/${name}`)) {
      throw new Conflict(`Backup "${name}" of instance "${instance}" already exists`);
    }
    const driver = this.deps.drivers.get(inst.type);
    if (!driver.backup) throw new BadRequest(`Backups of a ${inst.type} are not supported yet`);
    if (inst.type === "virtual-machine") checkStopped(inst, await driver.status(inst));
    const key = `${instance}/${name}`;
    this.#creating.add(key);
    const run = () =>
      this.deps.instances.locks.run(instance, async () => {
        try {
          const cur = this.deps.instances.get(instance);
          const snaps = req.instanceOnly ? [] : this.deps.store.listSnapshots(instance);
          const dir = this.deps.dir(instance);
          await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
          const out = join(dir, `${name}.tar.gz`);
          const status = await driver.status(cur);
          if (cur.type === "virtual-machine") checkStopped(cur, status);
          // A running container is frozen while it is read, so the backup is consistent.
          const freeze = status === "Running";
          if (freeze) await driver.freeze(cur);
          try {
            await driver.backup!(this.deps.instances.spec(cur), {
              snapshots: snaps.map((s) => s.name),
              index: indexOf(cur, snaps),
              out,
            });
          } catch (err) {
            await Deno.remove(out).catch(() => {});
            throw err;
          } finally {
            if (freeze) await driver.unfreeze(cur);
          }
          const rec: BackupRecord = {
            name,
            created_at: new Date().toISOString(),
            expires_at: req.expiresAt ?? NEVER,
            instance_only: req.instanceOnly,
          };
          await Deno.writeTextFile(join(dir, `${name}.json`), JSON.stringify(rec));
          return rec;
        } finally {
          this.#creating.delete(key);
        }
      });
    return { name, run };
  }

  async delete(instance: string, name: string): Promise<void> {
    await this.get(instance, name);
    await Deno.remove(join(this.deps.dir(instance), `${name}.json`)).catch(() => {});
    await Deno.remove(join(this.deps.dir(instance), `${name}.tar.gz`)).catch(() => {});
  }

  /** Renames a backup (its record and its file); 400 for a bad name, 409 for a taken one. */
  async renameBackup(instance: string, from: string, to: string): Promise<void> {
    await this.deps.instances.locks.run(instance, async () => {
      const rec = await this.get(instance, from);
      checkSnapshotName(to);
      if (
        (await this.list(instance)).some((b) => b.name === to) ||
        this.#creating.has(`${instance}/${to}`)
      ) {
        throw new Conflict(`Backup "${to}" of instance "${instance}" already exists`);
      }
      const dir = this.deps.dir(instance);
      await Deno.rename(join(dir, `${from}.tar.gz`), join(dir, `${to}.tar.gz`));
      const tmp = join(dir, `.${to}.json.tmp`);
      await Deno.writeTextFile(tmp, JSON.stringify({ ...rec, name: to }));
      await Deno.rename(tmp, join(dir, `${to}.json`));
      await Deno.remove(join(dir, `${from}.json`));
    });
  }

  /** The backup's file, streamed (opened by the first read). */
  async export(instance: string, name: string): Promise<FileStream> {
    await this.get(instance, name);
    const stream = await fileStream(join(this.deps.dir(instance), `${name}.tar.gz`));
    if (!stream) throw new NotFound(`The file of backup "${name}" of "${instance}" is missing`);
    return stream;
  }

  /** Deletes every backup whose expiry has passed (the daemon's minute timer calls it). */
  async pruneExpired(now = new Date()): Promise<string[]> {
    const pruned: string[] = [];
    for (const inst of this.deps.store.listInstances()) {
      for (const b of await this.list(inst.name)) {
        if (b.expires_at === NEVER || Date.parse(b.expires_at) > now.getTime()) continue;
        await this.delete(inst.name, b.name);
        pruned.push(`${inst.name}/${b.name}`);
      }
    }
    return pruned;
  }

  /** An instance's backups follow its rename. */
  async rename(from: string, to: string): Promise<void> {
    await Deno.rename(this.deps.dir(from), this.deps.dir(to)).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }

  /** An instance's backups go with it. */
  async forget(instance: string): Promise<void> {
    await Deno.remove(this.deps.dir(instance), { recursive: true }).catch(() => {});
  }

  /**
   * Imports a backup uploaded as `body` as a new instance (`name`, or the backup's own): the file
   * is read whole and checked before anything is made. Answers the new record.
   */
  async import(body: ReadableStream<Uint8Array>, name?: string): Promise<InstanceRecord> {
    const dir = this.deps.dir("");
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `.import-${crypto.randomUUID()}.tar.gz`);
    try {
      await receive(body, file);
      const index = await this.#check(file);
      const target = name ?? index.name;
      checkInstanceName(target);
      const release = this.deps.instances.claimName(target);
      try {
        return await this.#restore(file, index, target);
      } finally {
        release();
      }
    } finally {
      await Deno.remove(file).catch(() => {});
    }
  }

  /** The backup's index, once the whole file has been read and found sound. */
  async #check(file: string): Promise<Index> {
    const listing = await this.deps.runner.run(
      ["tar", "-tvzf", file, "--numeric-owner", "--quoting-style=escape"],
      { allowFailure: true },
    );
    if (listing.code !== 0) {
      throw new BadRequest(
        `The backup is corrupt or truncated: ${listing.stderr.trim().split("\n").pop() ?? ""}`,
      );
    }
    const members: BackupMember[] = [];
    for (const line of listing.stdout.split("\n")) {
      if (line === "") continue;
      const f = line.split(/\s+/);
      const [mode, owner] = f;
      const path = f.slice(5).join(" ").replace(/ (->|link to) .*$/, "");
      if (!path.startsWith("backup/") || path.split("/").includes("..")) {
        throw new BadRequest(`Invalid backup: "${path.slice(0, 120)}" is outside backup/`);
      }
      if ("cbp".includes(mode[0])) {
        throw new BadRequest(`Invalid backup: "${path.slice(0, 120)}" is a device node or fifo`);
      }
      const [uid, gid] = owner.split("/").map(Number);
      if (!(uid >= 0 && uid < ID_RANGE && gid >= 0 && gid < ID_RANGE)) {
        throw new BadRequest(
          `Invalid backup: "${path.slice(0, 120)}" is owned by ${owner}, outside a container's ids`,
        );
      }
      // The index is read into memory: a sender cannot make it large.
      if (path === "backup/index.yaml" && !(Number(f[2]) <= MAX_INDEX_BYTES)) {
        throw new BadRequest(`Invalid backup: backup/index.yaml is over ${MAX_INDEX_BYTES} bytes`);
      }
      members.push({ path, type: mode[0] });
    }
    const text = await this.deps.runner.run(["tar", "-xzOf", file, "backup/index.yaml"], {
      allowFailure: true,
    });
    if (text.code !== 0) throw new BadRequest("Invalid backup: it has no backup/index.yaml");
    const { parse } = await import("yaml");
    let raw: unknown;
    try {
      raw = parse(text.stdout);
    } catch (err) {
      throw new BadRequest(`Invalid backup index: ${(err as Error).message.split("\n")[0]}`);
    }
    const r = IndexSchema.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0];
      throw new BadRequest(`Invalid backup index: ${i.path.join(".")}: ${i.message}`);
    }
    for (const s of r.data.snapshots) checkSnapshotName(s);
    if (r.data.type === "virtual-machine") {
      checkVmBackupMembers(members, r.data.snapshots);
      return r.data;
    }
    if (!members.some((m) => m.path.startsWith("backup/container/rootfs"))) {
      throw new BadRequest("Invalid backup: it has no backup/container/rootfs/");
    }
    for (const s of r.data.snapshots) {
      if (!listing.stdout.includes(`backup/snapshots/${s}/rootfs`)) {
        throw new BadRequest(`Invalid backup: snapshot "${s}" has no rootfs`);
      }
    }
    return r.data;
  }

  async #restore(file: string, index: Index, name: string): Promise<InstanceRecord> {
    const c = index.config.container;
    const type = index.type;
    const profiles = c.profiles.filter((p) => this.deps.store.getProfile(p));
    // A container keeps the image it came from, for the record; a VM's restored disk stands alone,
    // so it names no image (that would hold the image back from deletion).
    const config = Object.fromEntries(
      Object.entries(c.config).filter(([k]) =>
        !k.startsWith("volatile.") || (k === "volatile.base_image" && type === "container")
      ),
    );
    this.deps.instances.checkNew(type, { config, devices: c.devices, profiles });
    const rec: InstanceRecord = {
      name,
      type,
      architecture: c.architecture,
      description: c.description,
      config: {
        ...config,
        "volatile.uuid": crypto.randomUUID(),
        "volatile.last_state.power": "STOPPED",
      },
      devices: c.devices,
      profiles,
      ephemeral: c.ephemeral,
      created_at: new Date().toISOString(),
      last_used_at: "1970-01-01T00:00:00Z",
    };
    const driver = this.deps.drivers.get(type);
    if (!driver.restoreBackup) throw new BadRequest(`Backups of a ${type} are not supported`);
    Object.assign(
      rec.config,
      await driver.restoreBackup(this.deps.instances.spec(rec), {
        file,
        snapshots: index.snapshots,
      }),
    );
    const snaps: SnapshotRecord[] = index.config.snapshots
      .filter((s) => index.snapshots.includes(s.name))
      .map((s) => ({
        instance: name,
        name: s.name,
        architecture: c.architecture,
        description: s.description,
        config: s.config,
        devices: s.devices,
        profiles: s.profiles,
        ephemeral: false,
        created_at: s.created_at,
        expires_at: s.expires_at,
      }));
    try {
      this.deps.store.transaction(() => {
        this.deps.store.putInstance(rec);
        for (const s of snaps) this.deps.store.putSnapshot(s);
      });
    } catch (err) {
      await driver.delete(rec).catch(() => {});
      throw err;
    }
    this.deps.events.lifecycle("instance-created", instanceUrl(name), { type });
    return rec;
  }
}

/** A VM is backed up stopped: its QEMU holds its disk while it runs (or is paused). */
function checkStopped(inst: InstanceRecord, status: string): void {
  if (status === "Running" || status === "Frozen") {
    throw new InvalidState(
      `Instance "${inst.name}" is ${status.toLowerCase()}: stop it before backing it up (a VM is backed up stopped)`,
    );
  }
}

/** The index a backup of `inst` and `snaps` carries. */
function indexOf(inst: InstanceRecord, snaps: SnapshotRecord[]): Record<string, unknown> {
  return {
    name: inst.name,
    backend: "dir",
    pool: "default",
    optimized: false,
    optimized_header: false,
    type: inst.type,
    snapshots: snaps.map((s) => s.name),
    config: {
      container: {
        architecture: inst.architecture,
        config: inst.config,
        devices: inst.devices,
        profiles: inst.profiles,
        description: inst.description,
        ephemeral: inst.ephemeral,
      },
      snapshots: snaps.map((s) => ({
        name: s.name,
        config: s.config,
        devices: s.devices,
        profiles: s.profiles,
        description: s.description,
        created_at: s.created_at,
        expires_at: s.expires_at,
      })),
    },
  };
}

/** Writes an upload to `file`, refusing more than MAX_BACKUP_BYTES. */
async function receive(body: ReadableStream<Uint8Array>, file: string): Promise<void> {
  const out = await Deno.open(file, { write: true, create: true, truncate: true, mode: 0o600 });
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > MAX_BACKUP_BYTES) {
        throw new PayloadTooLarge(`Backup too large: the limit is ${MAX_BACKUP_BYTES} bytes`);
      }
      for (let off = 0; off < chunk.length;) off += await out.write(chunk.subarray(off));
    }
  } finally {
    out.close();
  }
  if (size === 0) throw new BadRequest("Empty backup upload");
}
