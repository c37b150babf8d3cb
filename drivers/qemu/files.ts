/**
 * File access inside a VM through the guest agent: content with guest-file-*, metadata and
 * directory operations with small commands (`stat`, `ls`, `mkdir`, ...) the guest runs.
 */
import { BadRequest, NotFound } from "../../agent/errors.ts";
import type { InstanceRecord } from "../../agent/store.ts";
import type { FileAccess, FileInfo, FileType, FileWrite } from "../files.ts";
import type { QgaClient } from "./qga.ts";

const dec = new TextDecoder();

function checkPath(path: string): string {
  if (!path.startsWith("/")) throw new BadRequest(`Path "${path}" must be absolute`);
  return path;
}

export class QgaFiles implements FileAccess {
  constructor(private agent: (inst: InstanceRecord) => Promise<QgaClient>) {}

  async #sh(
    inst: InstanceRecord,
    argv: string[],
  ): Promise<{ code: number; out: string; err: string }> {
    const qga = await this.agent(inst);
    const r = await qga.run(argv, { timeoutMs: 30_000 });
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr).trim() };
  }

  async stat(inst: InstanceRecord, path: string): Promise<FileInfo> {
    checkPath(path);
    const r = await this.#sh(inst, ["stat", "-c", "%F|%u|%g|%a|%s", "--", path]);
    if (r.code !== 0) throw new NotFound(`File "${path}" not found in instance "${inst.name}"`);
    const [kind, uid, gid, mode, size] = r.out.trim().split("|");
    const type: FileType = kind === "directory"
      ? "directory"
      : kind === "symbolic link"
      ? "symlink"
      : "file";
    const info: FileInfo = {
      type,
      uid: Number(uid),
      gid: Number(gid),
      mode: parseInt(mode, 8),
      size: Number(size),
    };
    if (type === "symlink") {
      info.target = (await this.#sh(inst, ["readlink", "--", path])).out.trim();
    }
    if (type === "directory") {
      const ls = await this.#sh(inst, ["ls", "-1A", "--", path]);
      info.entries = ls.out.split("\n").filter(Boolean).sort();
    }
    return info;
  }

  async read(inst: InstanceRecord, path: string): Promise<Uint8Array> {
    const info = await this.stat(inst, path);
    if (info.type !== "file") throw new BadRequest(`"${path}" is a ${info.type}, not a file`);
    return await (await this.agent(inst)).readFile(path);
  }

  async write(inst: InstanceRecord, path: string, w: FileWrite): Promise<void> {
    checkPath(path);
    if (path === "/") throw new BadRequest("Cannot write to /");
    const existing = await this.stat(inst, path).catch(() => undefined);
    const parent = path.replace(/\/[^/]+\/?$/, "") || "/";
    const p = await this.stat(inst, parent).catch(() => undefined);
    if (!p || p.type !== "directory") {
      throw new NotFound(`Directory "${parent}" not found in instance "${inst.name}"`);
    }
    const run = async (argv: string[]) => {
      const r = await this.#sh(inst, argv);
      if (r.code !== 0) throw new BadRequest(`${argv[0]} ${path} failed in the guest: ${r.err}`);
    };
    if (w.type === "directory") {
      if (existing && existing.type !== "directory") {
        throw new BadRequest(`"${path}" exists and is not a directory`);
      }
      if (!existing) await run(["mkdir", "--", path]);
    } else if (w.type === "symlink") {
      await run(["ln", "-sfn", "--", dec.decode(w.data ?? new Uint8Array()), path]);
      return;
    } else {
      if (existing?.type === "directory") throw new BadRequest(`"${path}" is a directory`);
      await (await this.agent(inst)).writeFile(path, w.data ?? new Uint8Array(), {
        append: w.append,
      });
    }
    const mode = w.mode ?? existing?.mode ?? (w.type === "directory" ? 0o755 : 0o644);
    await run(["chmod", mode.toString(8), "--", path]);
    await run([
      "chown",
      `${w.uid ?? existing?.uid ?? 0}:${w.gid ?? existing?.gid ?? 0}`,
      "--",
      path,
    ]);
  }

  async remove(inst: InstanceRecord, path: string): Promise<void> {
    checkPath(path);
    if (path === "/") throw new BadRequest("Cannot remove /");
    const info = await this.stat(inst, path);
    if (info.type === "directory" && (info.entries?.length ?? 0) > 0) {
      throw new BadRequest(`Directory "${path}" is not empty`);
    }
    const r = await this.#sh(
      inst,
      info.type === "directory" ? ["rmdir", "--", path] : ["rm", "-f", "--", path],
    );
    if (r.code !== 0) throw new BadRequest(`Removing ${path} failed in the guest: ${r.err}`);
  }
}
