/** The driver for each instance type, probed once at start-up. */
import { Conflict } from "../contract/errors.ts";
import type { InstanceType } from "../contract/schemas.ts";
import type { Driver, DriverInfo } from "./driver.ts";

export interface ProbedDriver extends Driver {
  probe(): Promise<DriverInfo>;
  /** Ends the driver's background work when the daemon stops. */
  close?(): void;
}

export class DriverRegistry {
  #drivers = new Map<InstanceType, ProbedDriver>();

  constructor(drivers: ProbedDriver[]) {
    for (const d of drivers) this.#drivers.set(d.type, d);
  }

  /** Probes every driver; a missing tool makes a driver unavailable, never a crash. */
  async probe(log = console.error): Promise<DriverInfo[]> {
    const infos = await Promise.all([...this.#drivers.values()].map((d) => d.probe()));
    for (const i of infos) {
      if (!i.available) log(`driver ${i.name} unavailable: ${i.error}`);
    }
    return infos;
  }

  close(): void {
    for (const d of this.#drivers.values()) d.close?.();
  }

  infos(): DriverInfo[] {
    return [...this.#drivers.values()].map((d) => d.info());
  }

  /** The driver for `type`, or a Conflict naming why it cannot be used. */
  get(type: InstanceType): Driver {
    const d = this.#drivers.get(type);
    if (!d) {
      throw new Conflict(
        `No driver for ${type === "container" ? "containers" : "virtual machines"} on this host`,
      );
    }
    const info = d.info();
    if (!info.available) {
      throw new Conflict(`The ${info.name} driver is unavailable: ${info.error}`);
    }
    return d;
  }

  /** The driver that owns `type`, even when it is unavailable (for status reads). */
  maybe(type: InstanceType): Driver | undefined {
    return this.#drivers.get(type);
  }
}
