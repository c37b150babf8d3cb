/**
 * Profiles: named sets of config and devices that instances stack (`/1.0/profiles`). An instance's
 * expanded config and devices are its profiles' in order, then its own on top. `default` exists
 * from the first start, holds the root disk, and cannot be renamed or deleted; a profile in use
 * cannot be deleted. Editing a profile re-checks every instance that uses it and applies what can
 * change live to the running ones (the rest at their next start).
 */
import { createHash } from "node:crypto";
import { BadRequest, Conflict, NotFound, PreconditionFailed } from "../contract/errors.ts";
import { profileUrl } from "../contract/urls.ts";
import { checkDevices, type DeviceContext, isRootDisk } from "../drivers/device/device.ts";
import type { InstanceType } from "../contract/schemas.ts";
import { checkConfigKey, checkInstanceConfig } from "./config_keys.ts";
import type { EventBus } from "./events.ts";
import { KeyedLock } from "./locks.ts";
import type { InstanceRecord, ProfileRecord, Store } from "./store.ts";

/** The most profiles the store takes. */
export const MAX_PROFILES = 1000;
/** The most profiles one instance stacks. */
export const MAX_STACK = 32;

export const DEFAULT_PROFILE = "default";
/** The storage pool every instance's root disk is on (the state directory, a `dir` pool). */
export const DEFAULT_POOL = "default";

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function checkProfileName(name: string): void {
  if (typeof name !== "string" || !PROFILE_NAME.test(name)) {
    throw new BadRequest(
      `Invalid profile name "${
        String(name).slice(0, 80)
      }": use 1-63 letters, digits and "._-", starting with a letter or digit`,
    );
  }
}

export type Devices = Record<string, Record<string, string>>;

/** What a profile holds that a client may set. */
export interface ProfileFields {
  description: string;
  config: Record<string, string>;
  devices: Devices;
}

/** An instance's config and devices with its profiles applied. */
export interface Expanded {
  config: Record<string, string>;
  devices: Devices;
}

/** What the profile manager needs of the instances (wired by the agent). */
export interface ProfileUsers {
  /**
   * Applies a change of expanded config and devices to a running instance where it can change
   * live (under the instance's lock); the rest takes effect at its next start.
   */
  applyLive(name: string, before: Expanded, after: Expanded): Promise<void>;
}

/** Stacks `profiles` (in order) under an instance's own config and devices. */
export function expand(
  profiles: readonly ProfileRecord[],
  config: Readonly<Record<string, string>>,
  devices: Readonly<Devices>,
): Expanded {
  const out: Expanded = { config: {}, devices: {} };
  for (const p of profiles) {
    Object.assign(out.config, p.config);
    Object.assign(out.devices, p.devices);
  }
  Object.assign(out.config, config);
  Object.assign(out.devices, devices);
  // A device of type none hides the one of its name a profile gave.
  for (const [name, dev] of Object.entries(out.devices)) {
    if (dev.type === "none") delete out.devices[name];
  }
  return out;
}

/** Refuses a change of the pool an instance's root disk is on: its storage never moves. */
export function checkSameRootPool(
  name: string,
  before: Readonly<Devices>,
  after: Readonly<Devices>,
): void {
  const poolOf = (d: Readonly<Devices>) =>
    Object.values(d).find((dev) => isRootDisk(dev))?.pool ?? DEFAULT_POOL;
  if (poolOf(before) !== poolOf(after)) {
    throw new BadRequest(
      `The root disk of "${name}" is on pool "${
        poolOf(before)
      }": moving an instance's storage to another pool is not supported`,
    );
  }
}

export class ProfileManager {
  users: ProfileUsers = { applyLive: async () => {} };
  readonly #locks = new KeyedLock();

  constructor(private store: Store, private events: EventBus) {}

  /** Creates `default` (with the root disk) if it is missing. */
  ensureDefault(): void {
    if (this.store.getProfile(DEFAULT_PROFILE)) return;
    this.store.putProfile({
      name: DEFAULT_PROFILE,
      description: "Default outpost profile",
      config: {},
      devices: { root: { type: "disk", path: "/", pool: DEFAULT_POOL } },
    });
  }

  /** The managed networks, for checking nics (wired to the network manager by the agent). */
  networks: () => ReadonlyMap<string, { ipv4?: string }> = () => new Map();

  /** The storage pools and custom volumes, for checking disks (wired to the pools by the agent). */
  storage: {
    names(): ReadonlySet<string>;
    customVolumes(): ReadonlyMap<string, "filesystem" | "block">;
  } = { names: () => new Set([DEFAULT_POOL]), customVolumes: () => new Map() };

  /** What devices are checked against: the pools, volumes and networks that exist. */
  deviceContext(instanceType?: InstanceType): DeviceContext {
    return {
      instanceType,
      pools: this.storage.names(),
      volumes: this.storage.customVolumes(),
      networks: this.networks(),
    };
  }

  list(): ProfileRecord[] {
    return this.store.listProfiles();
  }

  get(name: string): ProfileRecord {
    const p = this.store.getProfile(name);
    if (!p) throw new NotFound(`Profile "${String(name).slice(0, 80)}" not found`);
    return p;
  }

  /** The instances that stack the profile, by name. */
  usedBy(name: string): string[] {
    return this.store.listInstances().filter((i) => i.profiles.includes(name)).map((i) => i.name);
  }

  etag(p: ProfileRecord): string {
    const body = { config: p.config, description: p.description, devices: p.devices };
    return createHash("sha256").update(JSON.stringify(body)).digest("hex");
  }

  /** The profile records of `names`, checked: each exists, none twice, at most MAX_STACK. */
  resolve(names: readonly string[]): ProfileRecord[] {
    if (names.length > MAX_STACK) {
      throw new BadRequest(`An instance stacks at most ${MAX_STACK} profiles`);
    }
    const seen = new Set<string>();
    return names.map((n) => {
      if (seen.has(n)) throw new BadRequest(`Profile "${String(n).slice(0, 80)}" is listed twice`);
      seen.add(n);
      return this.get(n);
    });
  }

  /** An instance's config and devices with its profiles applied. */
  expand(inst: Pick<InstanceRecord, "profiles" | "config" | "devices">): Expanded {
    const profiles = inst.profiles.flatMap((n) => this.store.getProfile(n) ?? []);
    return expand(profiles, inst.config, inst.devices);
  }

  create(req: ProfileFields & { name: string }): ProfileRecord {
    checkProfileName(req.name);
    this.#check(req);
    if (this.store.getProfile(req.name)) {
      throw new Conflict(`Profile "${req.name}" already exists`);
    }
    if (this.store.countProfiles() >= MAX_PROFILES) {
      throw new BadRequest(`There are already ${MAX_PROFILES} profiles: delete some first`);
    }
    const rec: ProfileRecord = {
      name: req.name,
      description: req.description,
      config: req.config,
      devices: req.devices,
    };
    this.store.putProfile(rec);
    this.events.lifecycle("profile-created", profileUrl(rec.name));
    return rec;
  }

  /** Replaces a profile's fields (PUT), honouring If-Match; the instances using it follow. */
  async update(name: string, req: ProfileFields, ifMatch?: string): Promise<void> {
    await this.#change(name, () => req, ifMatch);
  }

  /** Merges config keys and devices into a profile (PATCH), honouring If-Match. */
  async patch(name: string, req: Partial<ProfileFields>, ifMatch?: string): Promise<void> {
    await this.#change(name, (cur) => ({
      description: req.description ?? cur.description,
      config: { ...cur.config, ...(req.config ?? {}) },
      devices: { ...cur.devices, ...(req.devices ?? {}) },
    }), ifMatch);
  }

  /** One change of a profile, computed from it as it is under the profile's lock. */
  async #change(
    name: string,
    compute: (cur: ProfileRecord) => ProfileFields,
    ifMatch?: string,
  ): Promise<void> {
    await this.#locks.run(name, () => this.#apply(name, compute, ifMatch));
  }

  async #apply(
    name: string,
    compute: (cur: ProfileRecord) => ProfileFields,
    ifMatch?: string,
  ): Promise<void> {
    const cur = this.get(name);
    if (ifMatch !== undefined && ifMatch.replaceAll('"', "") !== this.etag(cur)) {
      throw new PreconditionFailed(`Profile "${name}" changed since it was read (ETag mismatch)`);
    }
    const req = compute(cur);
    this.#check(req);
    const next: ProfileRecord = { ...cur, ...req };
    // Each instance that uses it must still make sense with the new profile.
    const users = this.store.listInstances().filter((i) => i.profiles.includes(name));
    const before = users.map((i) => this.expand(i));
    const after = users.map((i) => {
      const profiles = i.profiles.map((n) => n === name ? next : this.get(n));
      const e = expand(profiles, i.config, i.devices);
      try {
        checkInstanceConfig(stripVolatile(e.config), i.type);
        checkDevices(e.devices, this.deviceContext(i.type));
        checkSameRootPool(i.name, before[users.indexOf(i)].devices, e.devices);
      } catch (err) {
        throw new BadRequest(
          `Profile "${name}" cannot be changed so: for instance "${i.name}": ${
            (err as Error).message
          }`,
        );
      }
      return e;
    });
    this.store.putProfile(next);
    this.events.lifecycle("profile-updated", profileUrl(name));
    for (const [n, inst] of users.entries()) {
      await this.users.applyLive(inst.name, before[n], after[n]);
    }
  }

  rename(name: string, to: string): void {
    this.get(name);
    checkProfileName(to);
    if (name === DEFAULT_PROFILE) throw new Conflict(`The "default" profile cannot be renamed`);
    if (this.store.getProfile(to)) throw new Conflict(`Profile "${to}" already exists`);
    this.store.renameProfile(name, to);
    this.events.lifecycle("profile-renamed", profileUrl(to), { old_name: name });
  }

  delete(name: string): void {
    this.get(name);
    if (name === DEFAULT_PROFILE) throw new Conflict(`The "default" profile cannot be deleted`);
    const used = this.usedBy(name);
    if (used.length > 0) {
      throw new Conflict(
        `Profile "${name}" is used by ${used.slice(0, 5).map((n) => `"${n}"`).join(", ")}${
          used.length > 5 ? ` and ${used.length - 5} more` : ""
        }: remove it from them first`,
      );
    }
    this.store.deleteProfile(name);
    this.events.lifecycle("profile-deleted", profileUrl(name));
  }

  /** A profile's config holds keys some instance type takes; its devices are checked alike. */
  #check(req: ProfileFields): void {
    for (const [key, value] of Object.entries(req.config)) {
      if (key.startsWith("volatile.")) {
        throw new BadRequest(`Config key "${key}" is the daemon's own: a profile cannot set it`);
      }
      try {
        checkConfigKey(key, value, "container");
      } catch (err) {
        try {
          checkConfigKey(key, value, "virtual-machine");
        } catch {
          throw err;
        }
      }
    }
    checkDevices(req.devices, this.deviceContext());
  }
}

function stripVolatile(config: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => !k.startsWith("volatile.")));
}
