/**
 * Copies of instances on this host (`POST /1.0/instances` with `source.type: "copy"`, `outpost
 * copy`, the stock `lxc copy`): the target gets the source's storage (or one snapshot's), its
 * snapshots unless `instance_only`, and its config, devices and profiles with the request's on
 * top. Its identity is new: a new `volatile.uuid`, new MACs at its first start. A running container
 * is frozen while its rootfs is copied, as a snapshot is.
 */
import { BadRequest } from "../contract/errors.ts";
import { checkInstanceName } from "../contract/names.ts";
import { instanceUrl } from "../contract/urls.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { EventBus } from "./events.ts";
import type { InstanceManager } from "./instances.ts";
import type { Device, InstanceRecord, Store } from "./store.ts";

export interface CopyRequest {
  /** The new instance. */
  name: string;
  /** `NAME` or `NAME/SNAPSHOT`. */
  source: string;
  /** Without the source's snapshots. */
  instanceOnly: boolean;
  /** Keys set on top of the source's. */
  config: Record<string, string>;
  devices: Record<string, Device>;
  /** Undefined: the source's. */
  profiles?: string[];
  description?: string;
  ephemeral: boolean;
}

/** The volatile keys a copy keeps: where its storage came from and the id map it is shifted to. */
const KEPT_VOLATILE = [
  "volatile.base_image",
  "volatile.last_state.idmap",
  "volatile.idmap.current",
];

function ownConfig(config: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(config).filter(([k]) => !k.startsWith("volatile.") || KEPT_VOLATILE.includes(k)),
  );
}

export class InstanceCopier {
  constructor(
    private store: Store,
    private instances: InstanceManager,
    private drivers: DriverRegistry,
    private events: EventBus,
  ) {}

  /** Checks a copy synchronously (400, 404, 409 before any work) and returns the work. */
  prepareCopy(req: CopyRequest): () => Promise<InstanceRecord> {
    checkInstanceName(req.name);
    const { inst: src, snap: snapRec } = this.instances.resolveRef(req.source, "A copy");
    const srcName = src.name;
    const snap = snapRec?.name;
    const base = snapRec ?? src;
    const userConfig = Object.fromEntries(
      Object.entries(req.config).filter(([k]) => !k.startsWith("volatile.")),
    );
    const config = { ...ownConfig(base.config), ...userConfig };
    const devices = { ...base.devices, ...req.devices };
    const profiles = req.profiles ?? [...base.profiles];
    this.instances.checkNew(src.type, { config: userConfig, devices, profiles });
    const driver = this.drivers.get(src.type);
    if (!driver.copy) throw new BadRequest(`Copies of a ${src.type} are not supported`);
    const release = this.instances.claimName(req.name);
    return async () => {
      try {
        return await this.instances.locks.run(srcName, async () => {
          const cur = this.instances.get(srcName);
          const snapshots = req.instanceOnly || snap ? [] : this.store.listSnapshots(srcName);
          const rec: InstanceRecord = {
            name: req.name,
            type: cur.type,
            architecture: base.architecture,
            description: req.description ?? base.description,
            config: {
              ...config,
              "volatile.uuid": crypto.randomUUID(),
              "volatile.last_state.power": "STOPPED",
            },
            devices,
            profiles,
            ephemeral: req.ephemeral,
            created_at: new Date().toISOString(),
            last_used_at: "1970-01-01T00:00:00Z",
          };
          const freeze = !snap && cur.type === "container" &&
            (await driver.status(cur)) === "Running";
          if (freeze) await driver.freeze(cur);
          try {
            Object.assign(
              rec.config,
              await driver.copy!(this.instances.spec(cur), this.instances.spec(rec), {
                from: snap,
                snapshots: snapshots.map((s) => s.name),
              }),
            );
          } finally {
            if (freeze) await driver.unfreeze(cur);
          }
          try {
            this.store.transaction(() => {
              this.store.putInstance(rec);
              for (const s of snapshots) this.store.putSnapshot({ ...s, instance: req.name });
            });
          } catch (err) {
            await driver.delete(rec).catch(() => {});
            throw err;
          }
          this.events.lifecycle("instance-created", instanceUrl(rec.name), { type: rec.type });
          return rec;
        });
      } finally {
        release();
      }
    };
  }
}
