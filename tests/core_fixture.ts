/**
 * The core (store, events, images, instances with their console and logs, snapshots) wired as
 * `agent/agent.ts` wires it, on a temp state dir, with the in-memory test double in place of the
 * LXC and QEMU drivers. For unit tests of the core's orchestration; the temp dir is removed
 * afterwards.
 */
import { join } from "node:path";
import { BackupManager } from "../agent/backups.ts";
import { EventBus } from "../agent/events.ts";
import { ImageStore } from "../agent/images.ts";
import { InstanceConsole } from "../agent/instance_console.ts";
import { InstanceLogs } from "../agent/instance_logs.ts";
import { type CreateRequest, InstanceManager } from "../agent/instances.ts";
import { Paths } from "../agent/paths.ts";
import { SnapshotManager } from "../agent/snapshots.ts";
import { type ImageRecord, type InstanceRecord, Store } from "../agent/store.ts";
import { DriverRegistry } from "../drivers/registry.ts";
import { Runner } from "../drivers/runner.ts";
import { MemoryDriver } from "./memory_driver.ts";

export interface Lifecycle {
  action: string;
  source: string;
  context: Record<string, unknown>;
}

export interface Core {
  paths: Paths;
  store: Store;
  events: EventBus;
  images: ImageStore;
  /** The container driver. */
  driver: MemoryDriver;
  /** The VM driver. */
  vmDriver: MemoryDriver;
  drivers: DriverRegistry;
  instances: InstanceManager;
  snapshots: SnapshotManager;
  consoles: InstanceConsole;
  instanceLogs: InstanceLogs;
  /** Every lifecycle event since the core was made (clear it freely). */
  lifecycle: Lifecycle[];
  /** What the managers logged. */
  log: string[];
  /** The container image (alias `busybox`) and the VM image (alias `vm`). */
  image: ImageRecord;
  vmImage: ImageRecord;
  /** Creates an instance through the manager; the call log and events are cleared afterwards. */
  create(name: string, more?: Partial<CreateRequest>): Promise<InstanceRecord>;
  /** Creates and starts an instance; the call log and events are cleared afterwards. */
  createRunning(name: string, more?: Partial<CreateRequest>): Promise<InstanceRecord>;
  /** Forgets the driver calls and lifecycle events so far. */
  reset(): void;
}

const IMAGE: ImageRecord = {
  fingerprint: "a".repeat(64),
  type: "container",
  architecture: "x86_64",
  filename: "busybox.tar.gz",
  size: 1,
  properties: { os: "busybox", description: "test image" },
  public: false,
  created_at: "2024-01-01T00:00:00.000Z",
  uploaded_at: "2024-01-01T00:00:00.000Z",
  last_used_at: "1970-01-01T00:00:00Z",
};

const VM_IMAGE: ImageRecord = {
  ...IMAGE,
  fingerprint: "b".repeat(64),
  type: "virtual-machine",
  filename: "vm.tar.gz",
};

/** A create request for a container from the `busybox` image (a VM from `vm`), with changes. */
/** The backups of the fixture's instances, with the host's tar. */
export function backupsOf(core: Core): BackupManager {
  return new BackupManager({
    store: core.store,
    instances: core.instances,
    drivers: core.drivers,
    events: core.events,
    runner: new Runner(),
    dir: (name) => core.paths.backups(name),
  });
}

export function createRequest(name: string, more: Partial<CreateRequest> = {}): CreateRequest {
  const type = more.type ?? "container";
  return {
    name,
    type,
    image: type === "container" ? "busybox" : "vm",
    config: {},
    devices: {},
    profiles: ["default"],
    description: "",
    ephemeral: false,
    ...more,
  };
}

export async function withCore(fn: (core: Core) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-core-" });
  const paths = new Paths(dir);
  await Deno.mkdir(paths.images);
  await Deno.mkdir(paths.logs);
  const store = new Store(paths.database);
  try {
    const events = new EventBus();
    const lifecycle: Lifecycle[] = [];
    events.subscribe(["lifecycle"], (e) => {
      const { action, source, context } = e.metadata as Lifecycle;
      lifecycle.push({ action, source, context });
    });
    const log: string[] = [];
    const images = new ImageStore(store, paths, new Runner(), events);
    store.putImage(IMAGE);
    store.putAlias({ name: "busybox", target: IMAGE.fingerprint, description: "" });
    store.putImage(VM_IMAGE);
    store.putAlias({ name: "vm", target: VM_IMAGE.fingerprint, description: "" });
    // A VM image is unpacked at import; creating a VM reads its metadata.
    await Deno.mkdir(images.dir(VM_IMAGE.fingerprint));
    await Deno.writeTextFile(
      join(images.dir(VM_IMAGE.fingerprint), "metadata.yaml"),
      "architecture: x86_64\ncreation_date: 1700000000\n",
    );
    const driver = new MemoryDriver();
    const vmDriver = new MemoryDriver({ type: "virtual-machine" });
    const drivers = new DriverRegistry([driver, vmDriver]);
    const instances = new InstanceManager(
      store,
      images,
      drivers,
      events,
      (msg) => log.push(msg),
      (name) => paths.instanceLogs(name),
    );
    instances.profiles.ensureDefault();
    const snapshots = new SnapshotManager(store, instances, drivers, events);
    const consoles = new InstanceConsole(instances, drivers, events);
    const instanceLogs = new InstanceLogs(
      instances,
      events,
      (name) => paths.instanceLogs(name),
      drivers,
    );
    const reset = () => {
      driver.calls.length = 0;
      vmDriver.calls.length = 0;
      lifecycle.length = 0;
    };
    const create = async (name: string, more: Partial<CreateRequest> = {}) => {
      const inst = await instances.prepareCreate(createRequest(name, more))();
      reset();
      return inst;
    };
    const createRunning = async (name: string, more: Partial<CreateRequest> = {}) => {
      await create(name, more);
      await (await instances.prepareState(name, { action: "start", force: false, timeout: -1 }))();
      reset();
      return instances.get(name);
    };
    await fn({
      paths,
      store,
      events,
      images,
      driver,
      vmDriver,
      drivers,
      instances,
      snapshots,
      consoles,
      instanceLogs,
      lifecycle,
      log,
      image: IMAGE,
      vmImage: VM_IMAGE,
      create,
      createRunning,
      reset,
    });
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}
