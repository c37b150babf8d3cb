/**
 * The SFTP verb against the in-memory test double (its files given an sftp() that records the
 * call): what is refused, and that the session is opened outside the instance's lock.
 */
import assert from "node:assert/strict";
import { BadRequest, InvalidState, NotFound } from "../contract/errors.ts";
import type { FileAccess, SftpChannel } from "../drivers/files.ts";
import type { InstanceSpec } from "../drivers/driver.ts";
import { type Core, withCore } from "../tests/core_fixture.ts";
import { InstanceSftp } from "./instance_sftp.ts";

/** Gives the container driver's files an sftp() answering a channel; the instances it was for. */
function withSftp(core: Core): { opened: string[]; lockHeld: boolean[] } {
  const seen = { opened: [] as string[], lockHeld: [] as boolean[] };
  const files = core.driver.files as FileAccess;
  files.sftp = (inst: InstanceSpec): Promise<SftpChannel> => {
    seen.opened.push(inst.name);
    seen.lockHeld.push(core.instances.locks.busy(inst.name));
    return Promise.resolve({
      readable: new ReadableStream(),
      writable: new WritableStream(),
      close: () => {},
      closed: Promise.resolve(),
    });
  };
  return seen;
}

Deno.test("open() reaches the driver outside the lock, for running and stopped containers", () =>
  withCore(async (core) => {
    const seen = withSftp(core);
    const sftp = new InstanceSftp(core.instances, core.drivers);
    await core.create("stopped");
    await core.createRunning("running");
    assert.ok(await sftp.open("stopped"));
    assert.ok(await sftp.open("running"));
    assert.deepEqual(seen.opened, ["stopped", "running"]);
    assert.deepEqual(seen.lockHeld, [false, false]);
  }));

Deno.test("open() refuses a missing instance, a VM, a frozen container and a driver without SFTP", () =>
  withCore(async (core) => {
    const sftp = new InstanceSftp(core.instances, core.drivers);
    await assert.rejects(sftp.open("nope"), NotFound);
    await core.create("vm", { type: "virtual-machine" });
    await assert.rejects(
      sftp.open("vm"),
      (e) => e instanceof BadRequest && /virtual machines/.test(e.message),
    );
    await core.createRunning("c1");
    await assert.rejects(
      sftp.open("c1"),
      (e) => e instanceof BadRequest && /not supported/.test(e.message),
    );
    const seen = withSftp(core);
    core.driver.setPower("c1", "Frozen");
    await assert.rejects(sftp.open("c1"), InvalidState);
    assert.deepEqual(seen.opened, []);
  }));
