/**
 * The daemon's core, assembled once: store, events, operations, images, profiles, instances (with
 * their console and logs), snapshots, drivers, the host's facts, the server certificate and the trust
 * store.
 */
import { LxcDriver } from "../drivers/lxc/driver.ts";
import { QemuDriver } from "../drivers/qemu/driver.ts";
import { DriverRegistry } from "../drivers/registry.ts";
import { Runner } from "../drivers/runner.ts";
import { checkServerKey } from "./config_keys.ts";
import { EventBus } from "./events.ts";
import { Host } from "./host.ts";
import { ImageStore } from "./images.ts";
import { InstanceConsole } from "./instance_console.ts";
import { InstanceLogs } from "./instance_logs.ts";
import { InstanceSftp } from "./instance_sftp.ts";
import { InstanceManager } from "./instances.ts";
import { InstanceCopier } from "./instance_copy.ts";
import { Publisher } from "./publish.ts";
import { StorageManager } from "./storage.ts";
import { BackupManager } from "./backups.ts";
import { ProfileManager } from "./profiles.ts";
import { DEFAULT_NETWORK, NetworkManager } from "./networks.ts";
import { BridgeDriver } from "../drivers/network/bridge.ts";
import { ProxyForwarder } from "../drivers/device/proxy.ts";
import { Metrics } from "./metrics.ts";
import { Operations } from "./operations.ts";
import { SnapshotManager } from "./snapshots.ts";
import { Paths } from "./paths.ts";
import { Store } from "./store.ts";
import { TrustStore } from "./trust.ts";
import { AuditLog } from "./audit.ts";
import { AuthFailures } from "../server/auth_failures.ts";
import { TrustTokens } from "./trust_tokens.ts";
import { httpsAddresses } from "../server/addresses.ts";
import { recoverInstances } from "./recovery.ts";
import { readHostFile } from "../drivers/hostfs.ts";
import { CERT_FILE, ensureServerCert, KEY_FILE, type ServerCert } from "../server/server_cert.ts";
import { FleetMembershipManager } from "./fleet.ts";
import { Upgrader } from "./upgrade.ts";
import { join } from "node:path";
import { hostname, userInfo } from "node:os";

/** Applies a server config change live; throws (a BadRequest) to refuse it. */
export type ServerConfigApplier = (
  next: Record<string, string>,
  old: Record<string, string>,
) => Promise<void>;

export class Agent {
  readonly paths: Paths;
  readonly store: Store;
  readonly events = new EventBus();
  readonly runner = new Runner();
  readonly operations: Operations;
  readonly images: ImageStore;
  readonly drivers: DriverRegistry;
  readonly instances: InstanceManager;
  readonly copies: InstanceCopier;
  readonly publisher: Publisher;
  readonly storage: StorageManager;
  readonly backups: BackupManager;
  readonly profiles: ProfileManager;
  readonly networks: NetworkManager;
  readonly snapshots: SnapshotManager;
  readonly consoles: InstanceConsole;
  readonly sftp: InstanceSftp;
  readonly instanceLogs: InstanceLogs;
  readonly host: Host;
  readonly metrics: Metrics;
  readonly trust: TrustStore;
  readonly tokens: TrustTokens;
  readonly audit: AuditLog;
  readonly authFailures = new AuthFailures();
  readonly fleet: FleetMembershipManager;
  readonly upgrader: Upgrader;
  readonly startedAt = new Date();
  /**
   * Whether the first start makes the default network: the daemon says yes unless told
   * `--no-network`; an Agent made anywhere else (a test) makes none.
   */
  defaultNetwork = false;
  /** The daemon's TLS certificate and its fingerprint (made or read by init()). */
  serverCert: ServerCert = { certificate: "", fingerprint: "" };

  constructor(stateDir: string, readonly log: (msg: string) => void = console.error) {
    this.paths = new Paths(stateDir);
    Deno.mkdirSync(stateDir, { recursive: true, mode: 0o711 });
    // Unprivileged containers must traverse the state dir to reach their rootfs.
    Deno.chmodSync(stateDir, 0o711);
    Deno.mkdirSync(this.paths.containers, { recursive: true, mode: 0o711 });
    Deno.chmodSync(this.paths.containers, 0o711);
    Deno.mkdirSync(this.paths.images, { recursive: true, mode: 0o700 });
    Deno.mkdirSync(this.paths.logs, { recursive: true, mode: 0o700 });
    this.store = new Store(this.paths.database);
    this.operations = new Operations(this.events, this.store, log);
    this.images = new ImageStore(this.store, this.paths, this.runner, this.events);
    this.drivers = new DriverRegistry([
      new LxcDriver(this.paths.containers, this.runner, this.paths.fileHelper),
      new QemuDriver({
        path: this.paths.vms,
        runner: this.runner,
        serverConfig: () => this.store.serverConfig(),
        probeCache: this.paths.kvmProbe,
        log,
      }),
    ]);
    this.profiles = new ProfileManager(this.store, this.events);
    this.profiles.ensureDefault();
    this.networks = new NetworkManager({
      store: this.store,
      events: this.events,
      bridge: new BridgeDriver(this.runner, {
        firewall: Deno.env.get("OUTPOST_FIREWALL") || undefined,
      }),
      runner: this.runner,
      dir: (name) => this.paths.network(name),
      log,
    });
    this.profiles.networks = () => this.networks.subnets();
    this.instances = new InstanceManager(
      this.store,
      this.images,
      this.drivers,
      this.events,
      log,
      (name) => this.paths.instanceLogs(name),
      this.profiles,
    );
    this.instances.nics = this.networks;
    this.instances.proxies = new ProxyForwarder(this.runner, log);
    this.copies = new InstanceCopier(this.store, this.instances, this.drivers, this.events);
    this.storage = new StorageManager({
      store: this.store,
      paths: this.paths,
      runner: this.runner,
      events: this.events,
      profiles: this.profiles,
      log,
    });
    this.profiles.storage = this.storage;
    this.instances.pools = this.storage;
    this.images.volumes = this.storage;
    this.backups = new BackupManager({
      store: this.store,
      instances: this.instances,
      drivers: this.drivers,
      events: this.events,
      runner: this.runner,
      dir: (name) => this.paths.backups(name),
    });
    this.instances.backups = this.backups;
    this.publisher = new Publisher(
      this.store,
      this.instances,
      this.images,
      this.drivers,
      this.paths,
    );
    this.snapshots = new SnapshotManager(this.store, this.instances, this.drivers, this.events);
    this.consoles = new InstanceConsole(this.instances, this.drivers, this.events);
    this.sftp = new InstanceSftp(this.instances, this.drivers);
    this.instanceLogs = new InstanceLogs(
      this.instances,
      this.events,
      (name) => this.paths.instanceLogs(name),
      this.drivers,
    );
    this.host = new Host(this.drivers);
    this.trust = new TrustStore(this.store, this.events);
    this.audit = new AuditLog(this.paths.auditLog, log);
    this.tokens = new TrustTokens({
      operations: this.operations,
      trust: this.trust,
      fingerprint: () => this.serverCert.fingerprint,
      addresses: () => httpsAddresses(this.serverConfig()["core.https_address"] ?? ""),
      expiry: () => this.serverConfig()["core.remote_token_expiry"] ?? "",
    });
    this.fleet = new FleetMembershipManager({
      store: this.store,
      credentials: async () => ({
        cert: await Deno.readTextFile(join(this.paths.root, CERT_FILE)),
        key: await Deno.readTextFile(join(this.paths.root, KEY_FILE)),
      }),
      log,
    });
    this.upgrader = new Upgrader({
      stateDir: this.paths.root,
      runner: this.runner,
      record: () => this.store.fleet(),
      credentials: async () => ({
        cert: await Deno.readTextFile(join(this.paths.root, CERT_FILE)),
        key: await Deno.readTextFile(join(this.paths.root, KEY_FILE)),
      }),
      log,
    });
    this.metrics = new Metrics({
      instances: () => this.instances.list().map((i) => this.instances.spec(i)),
      driver: (type) => this.drivers.maybe(type),
      operations: () => this.operations.list().length,
      startedAt: this.startedAt,
      log,
    });
  }

  /** Probes drivers and reconciles instances; call once before serving. */
  async init(): Promise<void> {
    this.serverCert = await ensureServerCert(this.runner, this.paths.root, {
      hostname: hostname(),
      user: userInfo().username,
    });
    await this.drivers.probe(this.log);
    const lxc = this.drivers.maybe("container");
    if (lxc instanceof LxcDriver && lxc.info().available) {
      const problem = await lxc.prepareFiles();
      if (problem) this.log(`warning: container file access will fail: ${problem}`);
    }
    // What a kill -9 left: temp files, half-made or half-deleted instances, running operations.
    await this.images.recover(this.log);
    await this.storage.restore();
    await this.networks.restore();
    if (this.store.fresh && this.defaultNetwork) {
      await makeDefaultNetwork(this.networks, this.profiles, this.log);
    }
    await recoverInstances(this.store, this.drivers, this.log);
    this.operations.recoverInterrupted();
    this.instances.bootId = (await readHostFile(this.runner, "/proc/sys/kernel/random/boot_id"))
      ?.trim();
    await this.instances.reconcile();
  }

  /** The URLs of the profiles and instances (their expanded devices) on a network. */
  networkUsers(name: string): string[] {
    return this.networks.usedBy(name, {
      profiles: this.profiles.list().map((p) => [p.name, p.devices]),
      instances: this.instances.list().map((i) => [i.name, this.profiles.expand(i).devices]),
    });
  }

  serverConfig(): Record<string, string> {
    return this.store.serverConfig();
  }

  /**
   * What applies server config outside the store (the daemon's HTTPS listener): each is called
   * with the new and the old config before the new one is kept, and a throw keeps the old one.
   */
  readonly serverConfigAppliers: ServerConfigApplier[] = [];

  /** Replaces the server config: checked, applied live, then kept. */
  async setServerConfig(config: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(config)) checkServerKey(k, v);
    const old = this.store.serverConfig();
    const applied: ServerConfigApplier[] = [];
    try {
      for (const apply of this.serverConfigAppliers) {
        await apply(config, old);
        applied.push(apply);
      }
    } catch (err) {
      // What was applied goes back to the old config, best effort.
      for (const undo of applied.reverse()) await undo(old, config).catch(() => {});
      throw err;
    }
    this.store.setServerConfig(config);
    this.events.lifecycle("config-updated", "/1.0");
  }

  close(): void {
    this.operations.close();
    this.drivers.close();
    this.store.close();
  }
}

/**
 * The first start: a managed bridge, `outpostbr0`, and an `eth0` on it in the default profile,
 * as Incus's `admin init` makes. A host where it cannot be made (a name taken, no dnsmasq) keeps
 * working without it, and says so.
 */
async function makeDefaultNetwork(
  networks: NetworkManager,
  profiles: ProfileManager,
  log: (msg: string) => void,
): Promise<void> {
  try {
    await networks.create({
      name: DEFAULT_NETWORK,
      description: "Default outpost network",
      type: "bridge",
      config: {},
    });
    await profiles.patch("default", {
      devices: { eth0: { type: "nic", network: DEFAULT_NETWORK, name: "eth0" } },
    });
  } catch (err) {
    log(`warning: no default network: ${err instanceof Error ? err.message : err}`);
  }
}
