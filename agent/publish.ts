/**
 * Publishing an instance as an image (`POST /1.0/images` with `source.type` instance, container or
 * snapshot; `outpost publish`; the stock `lxc publish`): the driver writes a unified tarball of the
 * stopped instance or of a snapshot (a container's rootfs at the ids it sees; a VM's disk as a
 * standalone qcow2 `rootfs.img`, with its kernel and initrd when it boots one); the image store
 * imports it like an upload (fingerprint, metadata checks), and the aliases asked for are made. A
 * container's snapshot is published while it runs; a VM's disk, snapshots and all, is read only
 * while it is stopped (its QEMU holds it).
 */
import { join } from "node:path";
import { BadRequest, Conflict, InvalidState } from "../contract/errors.ts";
import { checkAliasName } from "../contract/names.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { ImageStore } from "./images.ts";
import type { InstanceManager } from "./instances.ts";
import type { Paths } from "./paths.ts";
import type { ImageRecord, Store } from "./store.ts";

export interface PublishRequest {
  /** `NAME` or `NAME/SNAPSHOT`. */
  source: string;
  aliases: { name: string; description: string }[];
  /** Image properties, on top of the instance's `image.*` keys. */
  properties: Record<string, string>;
  public: boolean;
  filename?: string;
}

export class Publisher {
  constructor(
    private store: Store,
    private instances: InstanceManager,
    private images: ImageStore,
    private drivers: DriverRegistry,
    private paths: Paths,
  ) {}

  /** Checks a publish synchronously (400, 404, 409) and returns the work. */
  async preparePublish(req: PublishRequest): Promise<() => Promise<ImageRecord>> {
    const { inst, snap: snapRec } = this.instances.resolveRef(
      req.source,
      "Publishing (source.name)",
    );
    const name = inst.name;
    const snap = snapRec?.name;
    for (const a of req.aliases) {
      checkAliasName(a.name);
      if (this.store.getAlias(a.name)) throw new Conflict(`Alias "${a.name}" already exists`);
    }
    const driver = this.drivers.get(inst.type);
    if (!driver.publish) {
      throw new BadRequest(`Publishing a ${inst.type} as an image is not supported yet`);
    }
    const mustStop = !snap || inst.type === "virtual-machine";
    if (mustStop && (await driver.status(inst)) !== "Stopped") {
      throw new InvalidState(
        inst.type === "virtual-machine"
          ? `Instance "${name}" is running: stop it first (a VM is published stopped, from its disk or a snapshot)`
          : `Instance "${name}" is running: stop it first, or publish one of its snapshots`,
      );
    }
    const config = (snapRec ?? inst).config;
    const properties: Record<string, string> = {};
    for (const [k, v] of Object.entries(config)) {
      if (k.startsWith("image.")) properties[k.slice("image.".length)] = v;
    }
    Object.assign(properties, req.properties);
    return () =>
      this.instances.locks.run(name, async () => {
        const cur = this.instances.get(name);
        if (mustStop && (await driver.status(cur)) !== "Stopped") {
          throw new InvalidState(`Instance "${name}" was started: stop it first`);
        }
        await Deno.mkdir(this.paths.images, { recursive: true });
        const out = join(this.paths.images, `.publish-${crypto.randomUUID()}.tar.gz`);
        try {
          await driver.publish!(this.instances.spec(cur), {
            from: snap,
            out,
            metadata: {
              architecture: cur.architecture,
              creation_date: Math.floor(Date.now() / 1000),
              properties,
            },
          });
          const file = await Deno.open(out);
          const image = await this.images.import(file.readable, {
            filename: req.filename,
            public: req.public,
          });
          for (const a of req.aliases) {
            this.images.createAlias(a.name, image.fingerprint, a.description);
          }
          return image;
        } finally {
          await Deno.remove(out).catch(() => {});
        }
      });
  }
}
