/**
 * An instance's logs (`/1.0/instances/{name}/logs`): the runtime's own log (LXC's `lxc.log`,
 * QEMU's `qemu.log`, which `info --show-log` reads) and the files its recorded execs left in its
 * log dir, listed, read and deleted under the instance's lock, and where a new recording goes. A
 * file name is one plain name, so no request reaches outside the dir; the runtime's log is kept.
 */
import { join } from "node:path";
import { BadRequest, NotFound } from "../contract/errors.ts";
import type { EventBus } from "./events.ts";
import { type FileStream, fileStream } from "./file_stream.ts";
import type { InstanceManager } from "./instances.ts";
import type { DriverRegistry } from "../drivers/registry.ts";
import { instanceLogUrl } from "../contract/urls.ts";

/** A log file's name as the daemon writes them: letters, digits, `_.-`, no leading dot. */
const LOG_FILE = /^[\w-][\w.-]{0,254}$/;

/** Refuses a log file name that is not one the daemon could have written. */
function checkLogFile(file: string): void {
  if (!LOG_FILE.test(file)) {
    throw new BadRequest(`Invalid log file name "${file.slice(0, 80)}"`);
  }
}

export class InstanceLogs {
  constructor(
    private instances: InstanceManager,
    private events: EventBus,
    /** An instance's log dir (moved on rename, removed on delete by the instance manager). */
    private dir: (name: string) => string,
    private drivers: DriverRegistry,
  ) {}

  /** The runtime's log files of an instance (name → path); none where the driver keeps none. */
  #runtimeLogs(name: string): Record<string, string> {
    const inst = this.instances.get(name);
    return this.drivers.get(inst.type).runtimeLogs?.(inst) ?? {};
  }

  /** Where the `record-output` execs of an instance write (what `runToEnd` records into). */
  recordTarget(name: string): { dir: string; name: string } {
    return { dir: this.dir(name), name };
  }

  /** The names of an instance's log files, sorted (none before its first recording). */
  async list(name: string): Promise<string[]> {
    return await this.instances.locks.run(name, async () => {
      const files: string[] = [];
      for (const [file, path] of Object.entries(this.#runtimeLogs(name))) {
        if ((await Deno.stat(path).catch(() => undefined))?.isFile) files.push(file);
      }
      try {
        for await (const e of Deno.readDir(this.dir(name))) {
          if (e.isFile && LOG_FILE.test(e.name)) files.push(e.name);
        }
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      return files.sort();
    });
  }

  /** One log file's content, streamed (its size at open); emits `instance-log-retrieved`. */
  async read(name: string, file: string): Promise<FileStream> {
    checkLogFile(file);
    return await this.instances.locks.run(name, async () => {
      const path = this.#runtimeLogs(name)[file] ?? join(this.dir(name), file);
      const stream = await fileStream(path);
      if (!stream) throw new NotFound(`Log file "${file}" not found`);
      this.events.lifecycle("instance-log-retrieved", instanceLogUrl(name, file));
      return stream;
    });
  }

  /** Removes one log file; emits `instance-log-deleted`. */
  async delete(name: string, file: string): Promise<void> {
    checkLogFile(file);
    await this.instances.locks.run(name, async () => {
      if (Object.hasOwn(this.#runtimeLogs(name), file)) {
        throw new BadRequest(`"${file}" is the runtime's log of the instance: it is not deleted`);
      }
      const path = join(this.dir(name), file);
      const info = await Deno.lstat(path).catch((err) => {
        if (err instanceof Deno.errors.NotFound) return undefined;
        throw err;
      });
      if (!info?.isFile) throw new NotFound(`Log file "${file}" not found`);
      await Deno.remove(path);
      this.events.lifecycle("instance-log-deleted", instanceLogUrl(name, file));
    });
  }
}
