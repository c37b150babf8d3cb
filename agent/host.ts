/**
 * What the daemon tells about its host (`GET /1.0`, `GET /1.0/resources`): architectures, kernel,
 * OS (from os-release, read once), name, CPUs, memory, and the instance drivers as probed.
 */
import { arch, availableParallelism, cpus, freemem, hostname, release, totalmem } from "node:os";
import type { DriverInfo } from "../drivers/driver.ts";
import type { DriverRegistry } from "../drivers/registry.ts";

export interface OsRelease {
  name: string;
  version: string;
}

export interface HostInfo {
  /** The host's own architecture first, then those it also runs (x86_64 runs i686). */
  architectures: string[];
  kernelVersion: string;
  os: OsRelease;
  hostname: string;
  drivers: DriverInfo[];
}

export interface HostResources {
  architecture: string;
  cpu: { total: number; model: string; cores: number };
  memory: { total: number; used: number };
  drivers: DriverInfo[];
}

/** NAME and VERSION_ID of an os-release file (either may be missing, then empty). */
function parseOsRelease(text: string): OsRelease {
  const get = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?`, "m").exec(text)?.[1] ?? "";
  return { name: get("NAME"), version: get("VERSION_ID") };
}

function architectures(): string[] {
  return arch() === "x64" ? ["x86_64", "i686"] : arch() === "arm64" ? ["aarch64"] : [arch()];
}

export class Host {
  #os?: OsRelease;

  constructor(private drivers: DriverRegistry, private osReleasePath = "/etc/os-release") {}

  /** The host's OS as os-release names it (empty when the file is missing or unreadable). */
  #osRelease(): OsRelease {
    if (!this.#os) {
      try {
        this.#os = parseOsRelease(Deno.readTextFileSync(this.osReleasePath));
      } catch {
        this.#os = { name: "", version: "" };
      }
    }
    return this.#os;
  }

  info(): HostInfo {
    return {
      architectures: architectures(),
      kernelVersion: release(),
      os: this.#osRelease(),
      hostname: hostname(),
      drivers: this.drivers.infos(),
    };
  }

  resources(): HostResources {
    const list = cpus();
    return {
      architecture: architectures()[0],
      cpu: { total: availableParallelism(), model: list[0]?.model ?? "", cores: list.length },
      memory: { total: totalmem(), used: totalmem() - freemem() },
      drivers: this.drivers.infos(),
    };
  }
}
