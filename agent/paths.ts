/** The layout of the daemon's state directory. */
import { join } from "node:path";

export const DEFAULT_STATE_DIR = "/var/lib/outpost";

/** The state dir from `--state-dir`, then `OUTPOST_DIR`, then the default. */
export function resolveStateDir(flag?: string): string {
  return flag ?? Deno.env.get("OUTPOST_DIR") ?? DEFAULT_STATE_DIR;
}

export class Paths {
  constructor(readonly root: string) {}
  get socket(): string {
    return join(this.root, "unix.socket");
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
  get pidfile(): string {
    return join(this.root, "daemon.pid");
  }
  get daemonLog(): string {
    return join(this.root, "daemon.log");
  }
}
