/**
 * An instance's console: a session is checked when asked for and attached under the instance's
 * lock (held for the attach, not for the session), announced as `instance-console`; the console
 * log is what the instance printed since it started.
 */
import { BadRequest, InvalidState } from "../contract/errors.ts";
import type { ExecProcess } from "../drivers/driver.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { EventBus } from "./events.ts";
import type { InstanceManager } from "./instances.ts";
import type { InstanceRecord } from "./store.ts";
import { instanceUrl } from "../contract/urls.ts";

export interface ConsoleRequest {
  /** `vga` (a graphical console) is refused: outpost's VMs have a serial console only. */
  type: "console" | "vga";
  width: number;
  height: number;
}

export class InstanceConsole {
  constructor(
    private instances: InstanceManager,
    private drivers: DriverRegistry,
    private events: EventBus,
  ) {}

  /**
   * Checks a console request (a running instance whose driver has a console) and returns the
   * function that attaches it, so a refusal comes before any operation exists.
   */
  async prepare(name: string, req: ConsoleRequest): Promise<() => Promise<ExecProcess>> {
    const inst = this.instances.get(name);
    if (req.type === "vga") throw new BadRequest("VGA consoles are only for virtual machines");
    const driver = this.drivers.get(inst.type);
    if (!driver.console) throw new BadRequest(`Instance "${name}" has no console`);
    const attach = driver.console.bind(driver);
    await this.#checkRunning(inst);
    return () =>
      this.instances.locks.run(name, async () => {
        const cur = this.instances.get(name);
        // Checked again under the lock: a stop may have come first.
        await this.#checkRunning(cur);
        const proc = await attach(cur, { width: req.width, height: req.height });
        this.events.lifecycle("instance-console", instanceUrl(name), { type: "console" });
        return proc;
      });
  }

  /** The console output kept since the instance started; emits `instance-console-retrieved`. */
  async log(name: string): Promise<Uint8Array> {
    return await this.instances.locks.run(name, async () => {
      const inst = this.instances.get(name);
      const driver = this.drivers.get(inst.type);
      if (!driver.consoleLog) throw new BadRequest(`Instance "${name}" has no console log`);
      const log = await driver.consoleLog(inst);
      this.events.lifecycle("instance-console-retrieved", instanceUrl(name));
      return log;
    });
  }

  async #checkRunning(inst: InstanceRecord): Promise<void> {
    const status = await this.instances.status(inst);
    if (status === "Frozen") {
      throw new InvalidState(`Instance "${inst.name}" is frozen: resume it first`);
    }
    if (status !== "Running") throw new InvalidState(`Instance "${inst.name}" is not running`);
  }
}
