/** The layout of the daemon's state directory. */
import { join } from "node:path";
import { socketPath } from "../contract/state_dir.ts";

export class Paths {
  constructor(readonly root: string) {}
  get socket(): string {
    return socketPath(this.root);
  }
  get database(): string {
    return join(this.root, "outpost.db");
  }
  /** The daemon's own LXC path: it never touches containers other tools manage. */
  get containers(): string {
    return join(this.root, "containers");
  }
  /** Virtual machines: one directory each (disk overlay, sockets, logs). */
  get vms(): string {
    return join(this.root, "virtual-machines");
  }
  /** Storage pools without a source of their own: a directory (or mount point) each. */
  storagePool(name: string): string {
    return join(this.root, "storage-pools", name);
  }
  /** The loop files of btrfs pools the daemon made. */
  get disks(): string {
    return join(this.root, "disks");
  }
  /** The default pool's unpacked image volumes and custom volumes. */
  get imageVolumes(): string {
    return join(this.root, "image-volumes");
  }
  get customVolumes(): string {
    return join(this.root, "custom-volumes");
  }
  /** Managed networks: one directory each (dnsmasq's pid file, leases and host entries). */
  network(name: string): string {
    return join(this.root, "networks", name);
  }
  /** An instance's backups (`backups("")`: where uploads are checked before an import). */
  backups(instance: string): string {
    return join(this.root, "backups", instance);
  }
  /** The cached result of the KVM usability probe. */
  get kvmProbe(): string {
    return join(this.root, "kvm-probe.json");
  }
  get images(): string {
    return join(this.root, "images");
  }
  image(fingerprint: string): string {
    return join(this.images, fingerprint);
  }
  get logs(): string {
    return join(this.root, "logs");
  }
  instanceLogs(name: string): string {
    return join(this.logs, name);
  }
  /** The confined file helper's code and compile cache (readable by containers' root ids). */
  get fileHelper(): string {
    return join(this.root, "file-helper");
  }
  /** One JSON line per mutating API call (see agent/audit.ts). */
  get auditLog(): string {
    return join(this.root, "audit.log");
  }
  get pidfile(): string {
    return join(this.root, "daemon.pid");
  }
  get daemonLog(): string {
    return join(this.root, "daemon.log");
  }
}
