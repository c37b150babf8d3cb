/**
 * SFTP sessions on an instance's files (`GET /1.0/instances/NAME/sftp` with `Upgrade: sftp`, what
 * `incus file push/pull/edit/mount` use): the instance is looked up and checked under its lock,
 * the session is opened outside it and outlives it, so a long transfer never holds up a stop.
 * Containers only, running or stopped: the driver roots a helper of its own in the container.
 */
import { BadRequest, InvalidState } from "../contract/errors.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import type { SftpChannel } from "../drivers/files.ts";
import type { InstanceManager } from "./instances.ts";

export class InstanceSftp {
  constructor(private instances: InstanceManager, private drivers: DriverRegistry) {}

  /**
   * A new SFTP session on instance `name`: NotFound when it does not exist, BadRequest for a
   * virtual machine, InvalidState when frozen, Conflict when too many sessions are open. The
   * caller pipes the client's bytes through the channel and closes it when either side ends.
   */
  async open(name: string): Promise<SftpChannel> {
    const inst = await this.instances.locks.run(name, async () => {
      const inst = this.instances.get(name);
      if (inst.type === "virtual-machine") {
        throw new BadRequest("SFTP is not supported for virtual machines");
      }
      if (await this.instances.status(inst) === "Frozen") {
        throw new InvalidState(`Instance "${name}" is frozen: resume it first`);
      }
      return inst;
    });
    const files = this.drivers.get(inst.type).files;
    if (!files?.sftp) throw new BadRequest(`SFTP is not supported for instance "${name}"`);
    return await files.sftp(inst);
  }
}
