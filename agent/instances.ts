/**
 * The instance manager: validates requests, keeps records in the store, drives the instance's
 * driver, emits lifecycle events, and reconciles with the drivers at start-up.
 */
import { createHash } from "node:crypto";
import { checkConfigKey, checkInstanceConfig, findInstanceKey, isLive } from "./config_keys.ts";
import { isTrue } from "../contract/units.ts";
import type { InstanceType } from "../contract/schemas.ts";
import {
  BadRequest,
  Conflict,
  InvalidState,
  messageOf,
  NotFound,
  PreconditionFailed,
} from "../contract/errors.ts";
import type { EventBus } from "./events.ts";
import type { ImageStore } from "./images.ts";
import { KeyedLock } from "./locks.ts";
import { DELETING, RENAMING_TO, RESUME } from "./recovery.ts";
import { checkInstanceName } from "../contract/names.ts";
import type { Device, InstanceRecord, SnapshotRecord, Store } from "./store.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { FileAccess } from "../drivers/files.ts";
import type { FileContent, FileInfo, FileWrite } from "../contract/files.ts";
import type { ExecOptions, ExecProcess, ExecRequest } from "../drivers/driver.ts";
import type { InstanceRuntime, PowerState } from "../contract/instance_state.ts";
import { instanceUrl } from "../contract/urls.ts";
import { checkDevices, mountsOf } from "../drivers/device/device.ts";
import { parseProxyAddress, type ProxyForwarder } from "../drivers/device/proxy.ts";
import type { DiskPlan, InstanceSpec, MountPlan, NicPlan } from "../drivers/driver.ts";
import type { StorageManager } from "./storage.ts";
import {
  checkSameRootPool,
  DEFAULT_PROFILE,
  expand,
  type Expanded,
  ProfileManager,
} from "./profiles.ts";

export interface CreateRequest {
  name: string;
  type: InstanceType;
  image: string;
  config: Record<string, string>;
  devices: Record<string, Device>;
  /** Undefined: `["default"]`, as LXD does (an empty list is no profile at all). */
  profiles?: string[];
  description: string;
  ephemeral: boolean;
}

export interface UpdateRequest {
  config: Record<string, string>;
  devices: Record<string, Device>;
  profiles: string[];
  description: string;
  ephemeral?: boolean;
}

/** What plans an instance's nics at each start and forgets them when it goes (the networks). */
export interface NicPlanner {
  plan(
    instance: string,
    type: InstanceType,
    devices: Record<string, Record<string, string>>,
    config: Readonly<Record<string, string>>,
  ): Promise<{ nics: NicPlan[]; volatile: Record<string, string> }>;
  forget(instance: string): Promise<void>;
}

export type StateAction = "start" | "stop" | "restart" | "freeze" | "unfreeze";

export interface StateRequest {
  action: StateAction;
  force: boolean;
  /** Seconds for a clean stop before it is forced; -1 means the default. */
  timeout: number;
}

/** A clean stop waits this long before killing, unless the request says otherwise. */
export const DEFAULT_STOP_TIMEOUT = 30;

/** The host boot an instance was last started in (a reboot since means it should come back). */
const BOOT_ID = "volatile.last_state.boot_id";

/** Refuses a state change that does not fit the instance's status. */
function checkAction(name: string, action: StateAction, status: PowerState): void {
  const refuse = (why: string) => {
    throw new InvalidState(`Instance "${name}" ${why}`);
  };
  switch (action) {
    case "start":
      if (status === "Running") refuse("is already running");
      if (status === "Frozen") refuse("is paused: resume it instead");
      break;
    case "stop":
      if (status === "Stopped") refuse("is already stopped");
      break;
    case "restart":
      if (status === "Stopped") refuse("is not running: start it instead");
      break;
    case "freeze":
      if (status === "Frozen") refuse("is already paused");
      if (status !== "Running") refuse("is not running");
      break;
    case "unfreeze":
      if (status !== "Frozen") refuse("is not paused");
      break;
  }
}

export class InstanceManager {
  readonly locks = new KeyedLock();
  #creating = new Set<string>();
  /** This host boot's id (`/proc/sys/kernel/random/boot_id`), set at start-up. */
  bootId?: string;
  /** Plans nics at start (the agent wires the network manager). */
  nics?: NicPlanner;
  /** Forwards proxy devices' ports while their instance runs (the agent wires it). */
  proxies?: ProxyForwarder;
  /** The storage pools: where an instance's storage is, its custom volumes (the agent wires them). */
  pools?: Pick<StorageManager, "plan" | "volumePath">;
  /** An instance's backups, which go with it (the agent wires them). */
  backups?: {
    forget(instance: string): Promise<void>;
    rename(from: string, to: string): Promise<void>;
  };

  constructor(
    private store: Store,
    private images: ImageStore,
    private drivers: DriverRegistry,
    private events: EventBus,
    private log: (msg: string) => void = console.error,
    /** Where an instance's exec logs live (moved on rename). */
    private logsDir: (name: string) => string = (name) => `/nonexistent/${name}`,
    readonly profiles: ProfileManager = new ProfileManager(store, events),
  ) {
    this.profiles.users = {
      applyLive: (name, before, after) => this.#applyLive(name, before, after),
    };
  }

  /**
   * Reserves a new instance's name for a create or copy under way (Conflict if it is taken);
   * answers the release.
   */
  claimName(name: string): () => void {
    if (this.store.getInstance(name) || this.#creating.has(name)) {
      throw new Conflict(`Instance "${name}" already exists`);
    }
    this.#creating.add(name);
    return () => this.#creating.delete(name);
  }

  /**
   * Checks a new instance's own config and devices and its profiles (throws BadRequest or
   * NotFound).
   */
  checkNew(
    type: InstanceType,
    req: { config: Record<string, string>; devices: Record<string, Device>; profiles: string[] },
  ): void {
    this.#checkFields(type, req);
  }

  /**
   * `NAME` or `NAME/SNAPSHOT` (a copy's or a publish's source): the instance and the snapshot, if
   * one is named (NotFound for either; BadRequest naming `what` for an empty name).
   */
  resolveRef(ref: string, what: string): {
    inst: InstanceRecord;
    snap?: SnapshotRecord;
  } {
    const slash = ref.indexOf("/");
    const name = slash < 0 ? ref : ref.slice(0, slash);
    if (name === "") throw new BadRequest(`${what} needs the name of an instance`);
    const inst = this.get(name);
    if (slash < 0) return { inst };
    const snapName = ref.slice(slash + 1);
    const snap = this.store.getSnapshot(name, snapName);
    if (!snap) throw new NotFound(`Snapshot "${snapName}" of instance "${name}" not found`);
    return { inst, snap };
  }

  /** What a driver is told of an instance: its record with its profiles applied, its pool. */
  spec(inst: InstanceRecord): InstanceSpec {
    const e = this.profiles.expand(inst);
    return { ...inst, config: e.config, devices: e.devices, pool: this.pools?.plan(e.devices) };
  }

  /**
   * The custom volumes among an instance's disks: filesystem volumes mounted into a container
   * (shifted to its ids unless it is privileged), block volumes given to a VM.
   */
  #volumes(spec: InstanceSpec): { mounts: MountPlan[]; disks: DiskPlan[] } {
    const mounts: MountPlan[] = [];
    const disks: DiskPlan[] = [];
    const entries = Object.entries(spec.devices).sort(([a], [b]) => a.localeCompare(b));
    for (const [device, d] of entries) {
      if (d.type !== "disk" || !d.pool || !d.source || d.path === "/") continue;
      if (!this.pools) throw new BadRequest(`Device "${device}": this daemon has no storage pools`);
      const v = this.pools.volumePath(d.pool, d.source);
      const readonly = d.readonly === "true";
      if (v.file) disks.push({ device, file: v.file, readonly });
      else {
        const shift = d.shift ? d.shift === "true" : spec.config["security.privileged"] !== "true";
        mounts.push({ device, source: v.dir, path: d.path, readonly, shift });
      }
    }
    return { mounts, disks };
  }

  /**
   * Checks an instance's own config and devices, its profiles, and the expansion of both
   * (throws BadRequest or NotFound); answers the expansion.
   */
  #checkFields(
    type: InstanceType,
    req: { config: Record<string, string>; devices: Record<string, Device>; profiles: string[] },
  ): Expanded {
    checkInstanceConfig(stripVolatile(req.config), type);
    const ctx = this.profiles.deviceContext(type);
    checkDevices(req.devices, ctx);
    const stacked = this.profiles.resolve(req.profiles);
    const expanded = expand(stacked, req.config, req.devices);
    checkInstanceConfig(stripVolatile(expanded.config), type);
    checkDevices(expanded.devices, ctx);
    return expanded;
  }

  list(): InstanceRecord[] {
    return this.store.listInstances();
  }

  get(name: string): InstanceRecord {
    const r = this.store.getInstance(name);
    if (!r) throw new NotFound(`Instance "${name}" not found`);
    return r;
  }

  async status(inst: InstanceRecord): Promise<PowerState> {
    const d = this.drivers.maybe(inst.type);
    if (!d || !d.info().available) return "Error";
    return await d.status(inst);
  }

  async state(inst: InstanceRecord): Promise<InstanceRuntime> {
    const d = this.drivers.maybe(inst.type);
    if (!d || !d.info().available) {
      return {
        status: "Error",
        pid: -1,
        processes: 0,
        memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
        cpu: { usage: 0 },
        network: {},
      };
    }
    return await d.state(this.spec(inst));
  }

  /** The ETag of an instance's writable fields (for If-Match). */
  etag(inst: InstanceRecord): string {
    const body = {
      architecture: inst.architecture,
      config: inst.config,
      devices: inst.devices,
      ephemeral: inst.ephemeral,
      profiles: inst.profiles,
      description: inst.description,
    };
    return createHash("sha256").update(JSON.stringify(body)).digest("hex");
  }

  /**
   * Checks a create request synchronously (so bad input fails before any operation starts) and
   * returns the function that does the work.
   */
  prepareCreate(req: CreateRequest): () => Promise<InstanceRecord> {
    checkInstanceName(req.name);
    const profiles = req.profiles ?? [DEFAULT_PROFILE];
    this.#checkFields(req.type, { ...req, profiles });
    if (this.store.getInstance(req.name) || this.#creating.has(req.name)) {
      throw new Conflict(`Instance "${req.name}" already exists`);
    }
    const driver = this.drivers.get(req.type);
    const image = this.images.resolve(req.image);
    if (image.type !== req.type) {
      throw new BadRequest(
        `Image "${req.image}" is a ${image.type} image; it cannot make a ${req.type}`,
      );
    }
    this.#creating.add(req.name);
    return async () => {
      try {
        const now = new Date().toISOString();
        const config: Record<string, string> = {};
        for (const [k, v] of Object.entries(image.properties)) config[`image.${k}`] = v;
        Object.assign(config, stripVolatile(req.config), {
          "volatile.base_image": image.fingerprint,
          "volatile.uuid": crypto.randomUUID(),
          "volatile.last_state.power": "STOPPED",
        });
        const inst: InstanceRecord = {
          name: req.name,
          type: req.type,
          architecture: image.architecture,
          description: req.description,
          config,
          devices: req.devices,
          profiles,
          ephemeral: req.ephemeral,
          created_at: now,
          last_used_at: "1970-01-01T00:00:00Z",
        };
        Object.assign(
          inst.config,
          await driver.create(this.spec(inst), await this.images.source(image)),
        );
        try {
          this.store.putInstance(inst);
        } catch (err) {
          await driver.delete(inst).catch(() => {});
          throw err;
        }
        this.images.markUsed(image.fingerprint);
        this.events.lifecycle("instance-created", instanceUrl(inst.name), {
          type: inst.type,
        });
        return inst;
      } finally {
        this.#creating.delete(req.name);
      }
    };
  }

  /** Checks a state change synchronously and returns the work. */
  async prepareState(name: string, req: StateRequest): Promise<() => Promise<void>> {
    const inst = this.get(name);
    const driver = this.drivers.get(inst.type);
    checkAction(name, req.action, await driver.status(inst));
    const timeout = req.timeout < 0 ? DEFAULT_STOP_TIMEOUT : req.timeout;
    return () =>
      this.locks.run(name, async () => {
        const cur = this.get(name);
        // Checked again under the lock: another change may have come first.
        checkAction(name, req.action, await driver.status(cur));
        const source = instanceUrl(name);
        switch (req.action) {
          case "start":
            await this.#start(cur);
            break;
          case "stop":
            await driver.stop(cur, { force: req.force, timeout });
            this.proxies?.stopAll(`${name}/`);
            this.#setPower(cur, "STOPPED");
            this.events.lifecycle(req.force ? "instance-stopped" : "instance-shutdown", source);
            if (cur.ephemeral) await this.#deleteNow(cur);
            break;
          case "restart":
            await this.whileResuming(cur, async () => {
              await driver.stop(cur, { force: req.force, timeout });
              this.proxies?.stopAll(`${name}/`);
              await this.#start(cur, false);
            });
            this.events.lifecycle("instance-restarted", source);
            break;
          case "freeze":
            await driver.freeze(cur);
            this.#setPower(cur, "FROZEN");
            this.events.lifecycle("instance-paused", source);
            break;
          case "unfreeze":
            await driver.unfreeze(cur);
            this.#setPower(cur, "RUNNING");
            this.events.lifecycle("instance-resumed", source);
            break;
        }
      });
  }

  /**
   * Runs work that stops a running instance and starts it again (restart, restore) with the
   * intent recorded: a kill in between leaves an instance the next start brings back up.
   */
  async whileResuming(inst: InstanceRecord, work: () => Promise<void>): Promise<void> {
    inst.config[RESUME] = "true";
    this.store.putInstance(inst);
    try {
      await work();
    } finally {
      delete inst.config[RESUME];
      this.store.putInstance(inst);
    }
  }

  async #start(inst: InstanceRecord, announce = true): Promise<void> {
    const driver = this.drivers.get(inst.type);
    const spec = this.spec(inst);
    let nics: NicPlan[] | undefined;
    if (Object.values(spec.devices).some((d) => d.type === "nic")) {
      if (!this.nics) throw new BadRequest("This daemon has no networks: nic devices cannot start");
      const plan = await this.nics.plan(inst.name, inst.type, { ...spec.devices }, inst.config);
      Object.assign(inst.config, plan.volatile);
      nics = plan.nics;
    }
    const volumes = this.#volumes(spec);
    const mounts = [...mountsOf(spec.devices), ...volumes.mounts];
    const disks = volumes.disks;
    for (const m of mounts) {
      const st = await Deno.stat(m.source).catch(() => undefined);
      if (!st?.isDirectory) {
        throw new BadRequest(
          `Device "${m.device}": source ${m.source} is not a directory on the host`,
        );
      }
    }
    // The proxies listen first: a port the host cannot give fails the start before it happens.
    await this.#startProxies(inst);
    try {
      Object.assign(
        inst.config,
        await driver.start({ ...this.spec(inst), nics, mounts, disks }),
      );
    } catch (err) {
      this.proxies?.stopAll(`${inst.name}/`);
      await this.backups?.forget(inst.name);
      throw err;
    }
    inst.last_used_at = new Date().toISOString();
    if (this.bootId) inst.config[BOOT_ID] = this.bootId;
    this.#setPower(inst, "RUNNING");
    if (announce) this.events.lifecycle("instance-started", instanceUrl(inst.name));
  }

  /** Listens for the instance's proxy devices (a 400 naming the device if a port is taken). */
  async #startProxies(inst: InstanceRecord): Promise<void> {
    const proxies = Object.entries(this.spec(inst).devices).filter(([, d]) => d.type === "proxy");
    if (proxies.length === 0) return;
    if (!this.proxies) throw new BadRequest("This daemon does not forward proxy devices");
    const driver = this.drivers.get(inst.type);
    const pid = async () => {
      const cur = this.store.getInstance(inst.name);
      return cur ? (await driver.state(this.spec(cur)).catch(() => ({ pid: -1 }))).pid : -1;
    };
    for (const [dev, d] of proxies) {
      try {
        await this.proxies.start(
          `${inst.name}/${dev}`,
          parseProxyAddress(d.listen)!,
          parseProxyAddress(d.connect)!,
          pid,
        );
      } catch (err) {
        this.proxies.stopAll(`${inst.name}/`);
        throw new BadRequest(`Device "${dev}": cannot listen on ${d.listen}: ${messageOf(err)}`);
      }
    }
  }

  /** Starts an instance for a caller that holds its lock (a restore that brings it back). */
  async startLocked(inst: InstanceRecord): Promise<void> {
    await this.#start(inst);
  }

  #setPower(inst: InstanceRecord, power: string): void {
    inst.config["volatile.last_state.power"] = power;
    this.store.putInstance(inst);
  }

  /** Replaces the writable fields (PUT), honouring `If-Match`. */
  async update(name: string, req: UpdateRequest, ifMatch?: string): Promise<InstanceRecord> {
    return await this.#change(name, () => req, ifMatch);
  }

  /** Merges into the writable fields (PATCH), against the record as it is under the lock. */
  async patch(
    name: string,
    req: Partial<UpdateRequest>,
    ifMatch?: string,
  ): Promise<InstanceRecord> {
    return await this.#change(name, (cur) => ({
      config: { ...cur.config, ...(req.config ?? {}) },
      devices: { ...cur.devices, ...(req.devices ?? {}) },
      profiles: req.profiles ?? cur.profiles,
      description: req.description ?? cur.description,
      ephemeral: req.ephemeral,
    }), ifMatch);
  }

  /**
   * One update of an instance's writable fields, serialised with every other change of it: the
   * new fields are computed from the current record under the instance's lock, so concurrent
   * PATCHes of distinct keys all land.
   */
  async #change(
    name: string,
    compute: (cur: InstanceRecord) => UpdateRequest,
    ifMatch?: string,
  ): Promise<InstanceRecord> {
    return await this.locks.run(name, async () => {
      const cur = this.get(name);
      if (ifMatch !== undefined && ifMatch.replaceAll('"', "") !== this.etag(cur)) {
        throw new PreconditionFailed(
          `Instance "${name}" changed since it was read (ETag mismatch)`,
        );
      }
      const req = compute(cur);
      const before = this.profiles.expand(cur);
      const after = this.#checkFields(cur.type, req);
      checkSameRootPool(name, before.devices, after.devices);
      const config = { ...stripVolatile(req.config), ...volatileOf(cur.config) };
      const next: InstanceRecord = {
        ...cur,
        config,
        devices: req.devices,
        profiles: req.profiles,
        description: req.description,
        ephemeral: req.ephemeral ?? cur.ephemeral,
      };
      const driver = this.drivers.get(cur.type);
      const status = await driver.status(cur);
      if (status !== "Stopped") {
        const changed = changedKeys(before.config, after.config);
        const fixed = changed.filter((k) => {
          const key = findInstanceKey(k, cur.type);
          return !key || !isLive(key, cur.type);
        });
        if (fixed.length > 0) {
          throw new InvalidState(
            `Config key "${
              fixed[0]
            }" cannot be changed while instance "${name}" is running: stop it first`,
          );
        }
        if (JSON.stringify(before.devices) !== JSON.stringify(after.devices)) {
          throw new InvalidState(
            `Devices of instance "${name}" cannot be changed while it is running`,
          );
        }
        await this.#applyLimits(cur, next, status, changed);
      }
      this.store.putInstance(next);
      this.events.lifecycle("instance-updated", instanceUrl(name));
      return next;
    });
  }

  /**
   * Limits are applied live; every other key takes effect at the next start (environment for exec
   * at once, since exec reads it from the record).
   */
  async #applyLimits(
    cur: InstanceRecord,
    next: InstanceRecord,
    status: PowerState,
    changed: string[],
  ): Promise<void> {
    const limits = changed.filter((k) => k.startsWith("limits."));
    if (limits.length === 0) return;
    if (status === "Frozen") {
      throw new InvalidState(`Instance "${cur.name}" is frozen: resume it before changing limits`);
    }
    await this.drivers.get(cur.type).applyLimits(this.spec(next), limits);
  }

  /**
   * A profile of a running instance changed: what can change live is applied (limits), the rest
   * takes effect at its next start.
   */
  async #applyLive(name: string, before: Expanded, after: Expanded): Promise<void> {
    await this.locks.run(name, async () => {
      const cur = this.store.getInstance(name);
      if (!cur) return;
      const status = await this.drivers.get(cur.type).status(cur);
      if (status !== "Running") return;
      const changed = changedKeys(before.config, after.config).filter((k) => {
        const key = findInstanceKey(k, cur.type);
        return key !== undefined && isLive(key, cur.type);
      });
      try {
        await this.#applyLimits(cur, cur, status, changed);
      } catch (err) {
        this.log(
          `instance ${name}: a profile's limits take effect at its next start: ${messageOf(err)}`,
        );
      }
      this.events.lifecycle("instance-updated", instanceUrl(name));
    });
  }

  /** Checks a delete synchronously and returns the work. */
  async prepareDelete(name: string): Promise<() => Promise<void>> {
    const inst = this.get(name);
    const driver = this.drivers.get(inst.type);
    const refuseRunning = (status: PowerState) => {
      if (status === "Running" || status === "Frozen") {
        throw new InvalidState(`Instance "${name}" is running: stop it first or pass --force`);
      }
    };
    refuseRunning(await driver.status(inst));
    return () =>
      this.locks.run(name, async () => {
        const cur = this.get(name);
        // Checked again under the lock: a start may have come first.
        refuseRunning(await driver.status(cur));
        await this.#deleteNow(cur);
      });
  }

  /** Checks a rename synchronously (stopped instance, free valid name) and returns the work. */
  async prepareRename(name: string, newName: string): Promise<() => Promise<void>> {
    const inst = this.get(name);
    checkInstanceName(newName);
    if (newName === name) throw new BadRequest(`Instance "${name}" already has that name`);
    if (this.store.getInstance(newName) || this.#creating.has(newName)) {
      throw new Conflict(`Instance "${newName}" already exists`);
    }
    const driver = this.drivers.get(inst.type);
    const refuseRunning = (status: PowerState) => {
      if (status !== "Stopped") {
        throw new InvalidState(`Instance "${name}" is running: stop it before renaming it`);
      }
    };
    // The new name is claimed before any wait, so a create of that name cannot slip in.
    this.#creating.add(newName);
    try {
      refuseRunning(await driver.status(inst));
    } catch (err) {
      this.#creating.delete(newName);
      throw err;
    }
    return () =>
      this.locks.run(name, async () => {
        try {
          const cur = this.get(name);
          // Checked again under the lock: a start may have come first.
          refuseRunning(await driver.status(cur));
          // The intent goes first: a kill between the storage move and the record's rename is
          // finished (or taken back) by the next start.
          this.store.putInstance({ ...cur, config: { ...cur.config, [RENAMING_TO]: newName } });
          try {
            await driver.rename(cur, newName);
          } catch (err) {
            this.store.putInstance(cur);
            throw err;
          }
          this.store.transaction(() => {
            this.store.putInstance(cur);
            this.store.renameInstance(name, newName);
          });
          await Deno.rename(this.logsDir(name), this.logsDir(newName)).catch(() => {});
          // The entries under the old name go; the next start writes them under the new one.
          await this.nics?.forget(name).catch(() => {});
          await this.backups?.rename(name, newName).catch(() => {});
          this.events.lifecycle("instance-renamed", instanceUrl(newName), {
            old_name: name,
          });
        } finally {
          this.#creating.delete(newName);
        }
      });
  }

  /** Removes a stopped instance's storage and record (callers hold its lock). */
  async #deleteNow(inst: InstanceRecord): Promise<void> {
    // The intent goes first: a kill during the delete is finished by the next start.
    this.store.putInstance({ ...inst, config: { ...inst.config, [DELETING]: "true" } });
    try {
      await this.drivers.get(inst.type).delete(inst);
    } catch (err) {
      this.store.putInstance(inst);
      throw err;
    }
    this.store.deleteInstance(inst.name);
    // Its exec logs and DHCP host entries go with it: a new instance of the name must not see them.
    await Deno.remove(this.logsDir(inst.name), { recursive: true }).catch(() => {});
    await this.nics?.forget(inst.name).catch(() => {});
    this.proxies?.stopAll(`${inst.name}/`);
    this.events.lifecycle("instance-deleted", instanceUrl(inst.name));
  }

  /** The instance, refused when it is frozen (its commands and guest agent would never answer). */
  /**
   * The instance, checked under its lock, so the check never interleaves with a start, stop,
   * rename or delete under way: not frozen, and running when `running` is set. The work that
   * follows (a transfer, a command) runs outside the lock: a long one never holds up a stop.
   */
  async #checked(name: string, running: boolean): Promise<InstanceRecord> {
    return await this.locks.run(name, async () => {
      const inst = this.get(name);
      const status = await this.status(inst);
      if (status === "Frozen") {
        throw new InvalidState(`Instance "${name}" is frozen: resume it first`);
      }
      if (running && status !== "Running") {
        throw new InvalidState(`Instance "${name}" is not running`);
      }
      return inst;
    });
  }

  #files(inst: InstanceRecord): FileAccess {
    const files = this.drivers.get(inst.type).files;
    if (!files) throw new BadRequest("File access is not supported for this instance type");
    return files;
  }

  /** A path's metadata inside the instance (directories list their entries). */
  async fileStat(name: string, path: string): Promise<FileInfo> {
    const inst = await this.#checked(name, false);
    return await this.#files(inst).stat(inst, path);
  }

  /**
   * What a GET of a path returns: a directory's entries or a symlink's target (in `info`), or a
   * regular file's content, streamed. Devices, FIFOs and sockets are refused.
   */
  async fileGet(name: string, path: string): Promise<FileInfo | FileContent> {
    const inst = await this.#checked(name, false);
    const got = await this.#files(inst).get(inst, path);
    this.events.lifecycle("instance-file-retrieved", instanceUrl(name), { path });
    return got;
  }

  async fileWrite(name: string, path: string, w: FileWrite): Promise<void> {
    const inst = await this.#checked(name, false);
    await this.#files(inst).write(inst, path, w);
    this.events.lifecycle("instance-file-pushed", instanceUrl(name), { path });
  }

  async fileRemove(name: string, path: string): Promise<void> {
    const inst = await this.#checked(name, false);
    await this.#files(inst).remove(inst, path);
    this.events.lifecycle("instance-file-deleted", instanceUrl(name), { path });
  }

  /**
   * Checks an exec request (a command; a running instance, probed once under its lock) and returns
   * the function that starts it with the instance's `environment.*` keys, so a refusal comes
   * before any operation exists.
   */
  async prepareExec(
    name: string,
    req: ExecRequest,
    opts: ExecOptions,
  ): Promise<() => Promise<ExecProcess>> {
    if (req.command.length === 0) throw new BadRequest("Exec needs a command");
    const inst = await this.#checked(name, true);
    const driver = this.drivers.get(inst.type);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.spec(inst).config)) {
      if (k.startsWith("environment.")) env[k.slice("environment.".length)] = v;
    }
    return async () => {
      this.events.lifecycle("instance-exec", instanceUrl(name), { command: req.command });
      return await driver.exec(inst, { ...req, environment: { ...env, ...req.environment } }, opts);
    };
  }

  /**
   * Start-up: compares the store with what the drivers report, and starts instances with
   * `boot.autostart=true` (or, when it is unset, those that were running when the host went down).
   */
  async reconcile(): Promise<void> {
    for (const inst of this.list()) {
      const driver = this.drivers.maybe(inst.type);
      if (!driver?.info().available) {
        this.log(`instance ${inst.name}: its ${inst.type} driver is unavailable`);
        continue;
      }
      let status = await driver.status(inst).catch(() => "Error" as const);
      if (status === "Error") {
        this.log(`instance ${inst.name}: storage missing or unreadable`);
        continue;
      }
      const power = inst.config["volatile.last_state.power"];
      // Frozen by the daemon for a snapshot copy when it was killed: thaw it.
      if (status === "Frozen" && power !== "FROZEN") {
        try {
          await driver.unfreeze(inst);
          status = "Running";
          this.log(`instance ${inst.name}: thawed (a snapshot was interrupted)`);
        } catch (err) {
          this.log(`instance ${inst.name}: could not thaw: ${messageOf(err)}`);
        }
      }
      // Stopped while the host stayed up (killed, or powered off from inside) while nobody was
      // watching: record the stop, so it is not taken for a host reboot and started again.
      const sameBoot = this.bootId !== undefined && inst.config[BOOT_ID] === this.bootId;
      const resume = inst.config[RESUME] !== undefined;
      if (resume) {
        delete inst.config[RESUME];
        this.#setPower(inst, status === "Stopped" ? "RUNNING" : power ?? "RUNNING");
        this.log(`instance ${inst.name}: a restart or restore was interrupted: starting it again`);
      } else if (status === "Stopped" && power === "RUNNING" && sameBoot) {
        this.#setPower(inst, "STOPPED");
        this.log(`instance ${inst.name}: stopped while the daemon was away`);
      }
      const autostart = this.spec(inst).config["boot.autostart"];
      const wasRunning = inst.config["volatile.last_state.power"] === "RUNNING";
      const want = resume || (autostart === undefined ? wasRunning : isTrue(autostart));
      if (status === "Stopped" && want) {
        try {
          await this.locks.run(inst.name, () => this.#start(inst));
          this.log(`instance ${inst.name}: started at boot`);
        } catch (err) {
          this.log(`instance ${inst.name}: autostart failed: ${messageOf(err)}`);
        }
      } else {
        this.log(`instance ${inst.name}: ${status.toLowerCase()}`);
        if (status === "Running" || status === "Frozen") {
          try {
            await this.#startProxies(inst);
          } catch (err) {
            this.log(`instance ${inst.name}: ${messageOf(err)}`);
          }
        }
      }
    }
  }

  /** Validates one key for `config set` callers that check before a PUT. */
  checkKey(key: string, value: string, type: InstanceType): void {
    checkConfigKey(key, value, type);
  }
}

function stripVolatile(config: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => !k.startsWith("volatile.")));
}

function volatileOf(config: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => k.startsWith("volatile.")));
}

function changedKeys(a: Record<string, string>, b: Record<string, string>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => a[k] !== b[k]);
}
