/**
 * A container's files, running or stopped, through the confined helper (drivers/forkfile): the
 * kernel keeps every path inside the container, and ids are the container's own because the
 * helper runs in its user namespace. Nothing here resolves a container path on the host.
 */
import { BadRequest, NotFound } from "../../contract/errors.ts";
import type { InstanceSpec } from "../driver.ts";
import type { ConfinedFiles, ConfinedTarget, IdRange } from "../forkfile/client.ts";
import type { FileAccess, SftpChannel } from "../files.ts";
import type { FileContent, FileInfo, FileWrite } from "../../contract/files.ts";

/** The ranges of a `volatile.*idmap*` JSON value (Incus's form); empty when privileged. */
export function idRanges(json: string): IdRange[] {
  let entries: unknown;
  try {
    entries = JSON.parse(json);
  } catch {
    throw new Error(`Invalid id map: ${json.slice(0, 80)}`);
  }
  if (!Array.isArray(entries)) throw new Error("Invalid id map: not a list");
  return entries.map((e) => {
    const ok = [e?.Hostid, e?.Nsid, e?.Maprange].every((n) => Number.isSafeInteger(n) && n >= 0);
    if (!ok) throw new Error("Invalid id map entry");
    return {
      isUid: e.Isuid === true,
      isGid: e.Isgid === true,
      hostId: e.Hostid,
      nsId: e.Nsid,
      range: e.Maprange,
    };
  });
}

const MAX_PATH = 4095;

/** Paths as the helper takes them: absolute, no NUL, bounded (the helper checks again). */
function checkPath(path: string): string {
  if (!path.startsWith("/")) throw new BadRequest(`Path "${path}" must be absolute`);
  if (path.includes("\0")) throw new BadRequest("Paths cannot contain NUL bytes");
  if (new TextEncoder().encode(path).length > MAX_PATH) throw new BadRequest("Path too long");
  return path;
}

/** "... not found" names the instance too. */
async function naming<T>(inst: InstanceSpec, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof NotFound) throw new NotFound(`${err.message} in instance "${inst.name}"`);
    throw err;
  }
}

export class LxcFileAccess implements FileAccess {
  constructor(
    private confined: ConfinedFiles,
    private target: (inst: InstanceSpec) => Promise<ConfinedTarget>,
  ) {}

  async stat(inst: InstanceSpec, path: string): Promise<FileInfo> {
    const st = await naming(inst, this.confined.stat(await this.target(inst), checkPath(path)));
    return { ...st };
  }

  async get(inst: InstanceSpec, path: string): Promise<FileInfo | FileContent> {
    const { stat, body } = await naming(
      inst,
      this.confined.get(await this.target(inst), checkPath(path)),
    );
    return body ? { info: { ...stat }, body } : { ...stat };
  }

  async write(inst: InstanceSpec, path: string, w: FileWrite): Promise<void> {
    checkPath(path);
    const target = await this.target(inst);
    if (w.type === "symlink") {
      const bytes = w.data instanceof Uint8Array ? w.data : new Uint8Array();
      await naming(
        inst,
        this.confined.write(target, {
          path,
          type: "symlink",
          uid: w.uid,
          gid: w.gid,
          append: false,
          target: new TextDecoder().decode(bytes),
        }),
      );
      return;
    }
    await naming(
      inst,
      this.confined.write(target, {
        path,
        type: w.type,
        uid: w.uid,
        gid: w.gid,
        mode: w.mode,
        append: w.append,
        data: w.type === "file" ? w.data : undefined,
      }),
    );
  }

  async remove(inst: InstanceSpec, path: string): Promise<void> {
    await naming(inst, this.confined.remove(await this.target(inst), checkPath(path)));
  }

  /** An SFTP session rooted in the container, running or stopped (a helper of its own). */
  async sftp(inst: InstanceSpec): Promise<SftpChannel> {
    return await this.confined.sftp(await this.target(inst));
  }
}
