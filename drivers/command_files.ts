/**
 * File access through commands run inside the instance (`stat`, `ls`, `cat`, `mkdir`...): for a
 * VM through its guest agent, for a running container through lxc-attach, so the instance's own
 * view of its file system (its mounts included) is what is read and written, and no path can
 * leave it. Content can also move through a faster channel where there is one (guest-file-*).
 */
import { BadRequest, Conflict, NotFound, PayloadTooLarge } from "../contract/errors.ts";
import type { InstanceSpec } from "./driver.ts";
import { dataBytes, type FileAccess } from "./files.ts";
import type { FileContent, FileInfo, FileType, FileWrite } from "../contract/files.ts";

export interface CommandResult {
  code: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

export interface GuestCommands {
  /** Runs argv in the instance as root, with `input` as its stdin. */
  run(inst: InstanceSpec, argv: string[], input?: Uint8Array): Promise<CommandResult>;
  /** A faster way to read a file's content (at most `max` bytes), if the instance has one. */
  readFile?(inst: InstanceSpec, path: string, max: number): ReadableStream<Uint8Array>;
  /** A faster way to write a file's content, if the instance has one. */
  writeFile?(inst: InstanceSpec, path: string, data: Uint8Array, append: boolean): Promise<void>;
}

const dec = new TextDecoder();

/** Content pushed through guest commands is held in memory whole: this is the most it may be. */
export const MAX_GUEST_PUSH = 256 * 2 ** 20;
/** Command output read for a file's content (without a faster channel) is bounded too. */
const MAX_GUEST_CAT = 64 * 2 ** 20;

function checkPath(path: string): string {
  if (!path.startsWith("/")) throw new BadRequest(`Path "${path}" must be absolute`);
  return path;
}

export class CommandFiles implements FileAccess {
  constructor(private guest: GuestCommands) {}

  async #sh(inst: InstanceSpec, argv: string[], input?: Uint8Array) {
    const r = await this.guest.run(inst, argv, input);
    return { code: r.code, out: r.stdout, err: dec.decode(r.stderr).trim() };
  }

  async stat(inst: InstanceSpec, path: string): Promise<FileInfo> {
    checkPath(path);
    const r = await this.#sh(inst, ["stat", "-c", "%F|%u|%g|%a|%s", "--", path]);
    if (r.code !== 0) throw new NotFound(`File "${path}" not found in instance "${inst.name}"`);
    const [kind, uid, gid, mode, size] = dec.decode(r.out).trim().split("|");
    const type: FileType = kind === "directory"
      ? "directory"
      : kind === "symbolic link"
      ? "symlink"
      : kind === "regular file" || kind === "regular empty file"
      ? "file"
      : "other";
    const info: FileInfo = {
      type,
      uid: Number(uid),
      gid: Number(gid),
      mode: parseInt(mode, 8),
      size: Number(size),
    };
    if (type === "symlink") {
      info.target = dec.decode((await this.#sh(inst, ["readlink", "--", path])).out).replace(
        /\n$/,
        "",
      );
    }
    if (type === "directory") {
      const ls = await this.#sh(inst, ["ls", "-1A", "--", path]);
      info.entries = dec.decode(ls.out).split("\n").filter(Boolean).sort();
    }
    return info;
  }

  async get(inst: InstanceSpec, path: string): Promise<FileInfo | FileContent> {
    const info = await this.stat(inst, path);
    if (info.type === "directory" || info.type === "symlink") return info;
    if (info.type !== "file") {
      throw new BadRequest(
        `"${path}" is a ${info.type === "other" ? "special file" : info.type}, not a regular file`,
      );
    }
    // Never more than the size it has now: a file that keeps growing cannot keep a download going.
    if (this.guest.readFile) return { info, body: this.guest.readFile(inst, path, info.size) };
    if (info.size > MAX_GUEST_CAT) {
      throw new BadRequest(`"${path}" is larger than ${MAX_GUEST_CAT} bytes: too large to read`);
    }
    const r = await this.#sh(inst, ["head", "-c", String(info.size), "--", path]);
    if (r.code !== 0) throw new BadRequest(`Reading ${path} failed in the instance: ${r.err}`);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(r.out);
        c.close();
      },
    });
    return { info, body };
  }

  async write(inst: InstanceSpec, path: string, w: FileWrite): Promise<void> {
    checkPath(path);
    if (path.replace(/\/+$/, "") === "") throw new BadRequest("Cannot write to /");
    const existing = await this.stat(inst, path).catch(() => undefined);
    const parent = path.replace(/\/[^/]+\/?$/, "") || "/";
    // The parent is followed if it is a symlink, as the kernel will when the file is made.
    const p = await this.#sh(inst, ["stat", "-L", "-c", "%F", "--", parent]);
    if (p.code !== 0) {
      throw new NotFound(`Parent directory "${parent}" not found in instance "${inst.name}"`);
    }
    if (dec.decode(p.out).trim() !== "directory") {
      throw new BadRequest(`"${parent}" is not a directory in instance "${inst.name}"`);
    }
    const run = async (argv: string[], input?: Uint8Array) => {
      const r = await this.#sh(inst, argv, input);
      if (r.code !== 0) throw new BadRequest(`${argv[0]} ${path} failed in the instance: ${r.err}`);
    };
    if (w.type === "directory") {
      if (existing && existing.type !== "directory") {
        throw new BadRequest(`"${path}" exists and is not a directory`);
      }
      if (!existing) await run(["mkdir", "--", path]);
    } else if (w.type === "symlink") {
      const target = dec.decode(await dataBytes(w.data, 4096));
      await run(["ln", "-sfn", "--", target, path]);
      return;
    } else {
      if (existing?.type === "directory") {
        throw new Conflict(
          `"${path}" is a directory in instance "${inst.name}": cannot write a file over it`,
        );
      }
      const data = await dataBytes(w.data, MAX_GUEST_PUSH).catch((err) => {
        if (err instanceof RangeError) {
          throw new PayloadTooLarge(
            `Files pushed to a VM are limited to ${MAX_GUEST_PUSH} bytes`,
          );
        }
        throw err;
      });
      if (this.guest.writeFile) await this.guest.writeFile(inst, path, data, w.append);
      else await run(["sh", "-c", w.append ? 'cat >> "$1"' : 'cat > "$1"', "sh", path], data);
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

  async remove(inst: InstanceSpec, path: string): Promise<void> {
    checkPath(path);
    if (path.replace(/\/+$/, "") === "") {
      throw new BadRequest(`Cannot remove the root directory of instance "${inst.name}"`);
    }
    const info = await this.stat(inst, path);
    if (info.type === "directory" && (info.entries?.length ?? 0) > 0) {
      throw new BadRequest(`Directory "${path}" is not empty in instance "${inst.name}"`);
    }
    const r = await this.#sh(
      inst,
      info.type === "directory" ? ["rmdir", "--", path] : ["rm", "-f", "--", path],
    );
    if (r.code !== 0) throw new BadRequest(`Removing ${path} failed in the instance: ${r.err}`);
  }
}
