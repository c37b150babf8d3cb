/** `outpost file push/pull/delete`: files in and out of instances, as `lxc file` does it. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { basename, join, posix, resolve } from "node:path";
import { type ApiClient, ApiError } from "../contract/client.ts";
import type { FileWrite } from "../contract/files.ts";
import { instanceFileUrl } from "../contract/urls.ts";
import { type CliContext, parseIntOption, UsageError } from "./context.ts";

/** What the files API reports in `X-Incus-type` (a device or FIFO is reported as a file). */
type RemoteType = FileWrite["type"];

interface RemoteStat {
  type: RemoteType;
  uid: number;
  gid: number;
  mode: number;
}

interface RemoteFile extends RemoteStat {
  /** File content, or a symlink's target. */
  data?: Uint8Array;
  entries?: string[];
}

interface PushOptions {
  type: RemoteType;
  data?: Uint8Array<ArrayBuffer>;
  uid?: number;
  gid?: number;
  mode?: number;
}

/** `NAME/PATH` (e.g. `c1/etc/hosts`); a trailing `/` marks a directory. */
export function parseRemotePath(spec: string): { name: string; path: string; dir: boolean } {
  const at = spec.indexOf("/");
  if (at <= 0) {
    throw new UsageError(
      `Invalid instance path "${spec}": expected NAME/PATH (e.g. c1/etc/hosts)`,
    );
  }
  const path = posix.normalize(spec.slice(at));
  return {
    name: spec.slice(0, at),
    path: path.length > 1 ? path.replace(/\/$/, "") : path,
    dir: spec.endsWith("/") || path === "/",
  };
}

/** `--mode`: octal permissions, `644`, `0644` or `0o644`. */
export function parseMode(value: string): number {
  if (!/^(0o?)?[0-7]{1,4}$/.test(value)) {
    throw new UsageError(`Invalid mode "${value}": expected octal permissions like 0644`);
  }
  return parseInt(value.replace(/^0o/, ""), 8);
}

function nonNegative(name: string) {
  const parse = parseIntOption(name);
  return (value: string): number => {
    const n = parse(value);
    if (n < 0) throw new UsageError(`Invalid ${name} "${value}": expected 0 or more`);
    return n;
  };
}

/** The `/files` API of one instance. */
class RemoteFiles {
  constructor(private client: ApiClient, readonly name: string) {}

  #url(path: string): string {
    return instanceFileUrl(this.name, path);
  }

  async #fail(res: Response, path: string): Promise<never> {
    const text = await res.text();
    let message = "";
    try {
      message = JSON.parse(text).error ?? "";
    } catch { /* HEAD, or not JSON */ }
    throw new ApiError(
      message || `Request for "${path}" in instance "${this.name}" failed with HTTP ${res.status}`,
      res.status,
    );
  }

  #stat(res: Response): RemoteStat {
    const h = (k: string) => res.headers.get(`x-incus-${k}`) ?? res.headers.get(`x-lxd-${k}`);
    return {
      type: (h("type") ?? "file") as RemoteType,
      uid: Number(h("uid") ?? 0),
      gid: Number(h("gid") ?? 0),
      mode: parseInt(h("mode") ?? "0644", 8),
    };
  }

  /** Stats a path; undefined when it does not exist. */
  async stat(path: string): Promise<RemoteStat | undefined> {
    const res = await this.client.fetch("HEAD", this.#url(path));
    if (res.status === 404) return undefined;
    if (!res.ok) return await this.#fail(res, path);
    return this.#stat(res);
  }

  async get(path: string): Promise<RemoteFile> {
    const res = await this.client.fetch("GET", this.#url(path));
    if (!res.ok) return await this.#fail(res, path);
    const file: RemoteFile = this.#stat(res);
    if (file.type === "directory") file.entries = (await res.json()).metadata ?? [];
    else file.data = new Uint8Array(await res.arrayBuffer());
    return file;
  }

  async push(path: string, opts: PushOptions): Promise<void> {
    const headers: Record<string, string> = { "X-Incus-type": opts.type };
    if (opts.uid !== undefined) headers["X-Incus-uid"] = String(opts.uid);
    if (opts.gid !== undefined) headers["X-Incus-gid"] = String(opts.gid);
    if (opts.mode !== undefined) headers["X-Incus-mode"] = `0${opts.mode.toString(8)}`;
    await this.client.request("POST", this.#url(path), {
      raw: opts.data ?? new Uint8Array(),
      headers,
    });
  }

  async delete(path: string): Promise<void> {
    await this.client.request("DELETE", this.#url(path));
  }

  /** Creates `path` and its missing parents as directories (existing ones are left alone). */
  async mkdirs(path: string): Promise<void> {
    let at = "";
    for (const part of path.split("/").filter((p) => p !== "")) {
      at += `/${part}`;
      if (!(await this.stat(at))) await this.push(at, { type: "directory" });
    }
  }
}

/** lstat (or stat, following symlinks) of a local path, as a one-line error when it fails. */
async function localStat(path: string, follow = false): Promise<Deno.FileInfo> {
  try {
    return await (follow ? Deno.stat(path) : Deno.lstat(path));
  } catch (err) {
    throw new UsageError(`Cannot read "${path}": ${err instanceof Error ? err.message : err}`);
  }
}

/** Pushes a local file, directory tree or symlink to `dest`, keeping modes and owners. */
async function pushTree(remote: RemoteFiles, local: string, dest: string): Promise<void> {
  const st = await localStat(local);
  const owner = { uid: st.uid ?? 0, gid: st.gid ?? 0, mode: st.mode! & 0o7777 };
  if (st.isSymlink) {
    const target = new TextEncoder().encode(await Deno.readLink(local));
    await remote.push(dest, { type: "symlink", data: target, uid: owner.uid, gid: owner.gid });
  } else if (st.isDirectory) {
    await remote.push(dest, { type: "directory", ...owner });
    const names: string[] = [];
    for await (const e of Deno.readDir(local)) names.push(e.name);
    for (const n of names.sort()) await pushTree(remote, join(local, n), posix.join(dest, n));
  } else if (st.isFile) {
    await remote.push(dest, { type: "file", data: await Deno.readFile(local), ...owner });
  } else {
    console.error(`Skipping "${local}": not a file, directory or symlink`);
  }
}

async function push(
  ctx: CliContext,
  args: string[],
  opts: { recursive?: boolean; createDirs?: boolean; uid?: number; gid?: number; mode?: string },
): Promise<void> {
  if (args.length < 2) throw new UsageError("file push needs SOURCE... and a NAME/PATH target");
  const target = parseRemotePath(args.at(-1)!);
  const sources = args.slice(0, -1);
  const remote = new RemoteFiles(ctx.client, target.name);
  const mode = opts.mode === undefined ? undefined : parseMode(opts.mode);
  if (opts.recursive && (opts.uid !== undefined || opts.gid !== undefined || mode !== undefined)) {
    throw new UsageError("--uid, --gid and --mode cannot be used with -r: local owners are kept");
  }
  if (opts.createDirs) {
    await remote.mkdirs(
      target.dir || sources.length > 1 ? target.path : posix.dirname(target.path),
    );
  }
  const into = target.dir || (await remote.stat(target.path))?.type === "directory";
  if (sources.length > 1 && !into) {
    throw new UsageError(
      `Pushing ${sources.length} sources needs a directory target: end it with "/" (e.g. ${target.name}/root/)`,
    );
  }
  for (const src of sources) {
    if (src === "-") {
      if (into || opts.recursive) throw new UsageError("Pushing stdin (-) needs a file target");
      const data = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
      await remote.push(target.path, { type: "file", data, uid: opts.uid, gid: opts.gid, mode });
      continue;
    }
    const dest = into ? posix.join(target.path, basename(resolve(src))) : target.path;
    if (opts.recursive) {
      await pushTree(remote, src, dest);
      continue;
    }
    const st = await localStat(src, true);
    if (st.isDirectory) {
      throw new UsageError(`"${src}" is a directory: pass -r to push it recursively`);
    }
    await remote.push(dest, {
      type: "file",
      data: await Deno.readFile(src),
      uid: opts.uid ?? st.uid ?? 0,
      gid: opts.gid ?? st.gid ?? 0,
      mode: mode ?? st.mode! & 0o7777,
    });
  }
}

/** Writes what a GET returned to `dest`; directories recurse (only asked for with -r). */
async function pullEntry(
  remote: RemoteFiles,
  path: string,
  dest: string,
  file: RemoteFile,
): Promise<void> {
  // Never create setuid/setgid files on the host from an instance's content.
  const mode = file.mode & 0o777;
  if (file.type === "symlink") {
    await Deno.remove(dest).catch(() => {});
    await Deno.symlink(new TextDecoder().decode(file.data), dest);
  } else if (file.type === "directory") {
    await Deno.mkdir(dest, { recursive: true });
    for (const name of file.entries ?? []) {
      if (name === "" || name === "." || name === ".." || name.includes("/")) {
        throw new UsageError(`Refusing the entry name "${name}" in "${path}"`);
      }
      const child = posix.join(path, name);
      await pullEntry(remote, child, join(dest, name), await remote.get(child));
    }
    await Deno.chmod(dest, mode);
  } else {
    await Deno.writeFile(dest, file.data ?? new Uint8Array(), { mode });
    await Deno.chmod(dest, mode);
  }
}

/** Follows a symlink (for `pull ... -`), as `lxc file pull` does, up to 40 hops. */
async function followLinks(remote: RemoteFiles, path: string, file: RemoteFile) {
  for (let hops = 0; file.type === "symlink"; hops++) {
    if (hops >= 40) throw new UsageError(`Too many levels of symbolic links at "${path}"`);
    const target = new TextDecoder().decode(file.data);
    path = target.startsWith("/") ? target : posix.join(posix.dirname(path), target);
    file = await remote.get(path);
  }
  return file;
}

async function pull(
  ctx: CliContext,
  args: string[],
  opts: { recursive?: boolean },
): Promise<void> {
  if (args.length < 2) throw new UsageError("file pull needs NAME/PATH... and a local TARGET");
  const target = args.at(-1)!;
  const sources = args.slice(0, -1).map(parseRemotePath);
  if (target === "-") {
    if (sources.length !== 1) throw new UsageError("Pulling to stdout (-) takes one file");
    const remote = new RemoteFiles(ctx.client, sources[0].name);
    const file = await followLinks(remote, sources[0].path, await remote.get(sources[0].path));
    if (file.type === "directory") {
      throw new UsageError(`"${sources[0].path}" is a directory: it cannot go to stdout`);
    }
    const data = file.data ?? new Uint8Array();
    for (let off = 0; off < data.length;) off += Deno.stdout.writeSync(data.subarray(off));
    return;
  }
  const existing = await Deno.stat(target).catch(() => undefined);
  let into = existing?.isDirectory ?? false;
  if (existing && !into && sources.length > 1) {
    throw new UsageError(`Pulling ${sources.length} sources needs a directory target`);
  }
  if (!existing && (target.endsWith("/") || sources.length > 1)) {
    await Deno.mkdir(target, { recursive: true });
    into = true;
  }
  for (const src of sources) {
    const remote = new RemoteFiles(ctx.client, src.name);
    const file = await remote.get(src.path);
    if (file.type === "directory" && !opts.recursive) {
      throw new UsageError(`"${src.name}${src.path}" is a directory: pass -r to pull it`);
    }
    const dest = into ? join(target, posix.basename(src.path) || src.name) : target;
    await pullEntry(remote, src.path, dest, file);
  }
}

export function fileCommand(ctx: CliContext): CommandUnknownOpts {
  const file = new Command("file").description("Manage files in instances");

  file.command("push")
    .usage("[options] SOURCE... NAME/PATH")
    .description("Push local files into an instance (SOURCE - reads stdin)")
    .argument("<paths...>", "SOURCE... then the target NAME/PATH (NAME/DIR/ pushes into DIR)")
    .option("-r, --recursive", "Push directories recursively, with their modes and symlinks")
    .option("-p, --create-dirs", "Create missing parent directories in the instance")
    .option(
      "--uid <uid>",
      "Owner uid inside the instance (default: the local file's)",
      nonNegative("uid"),
    )
    .option(
      "--gid <gid>",
      "Owner gid inside the instance (default: the local file's)",
      nonNegative("gid"),
    )
    .option("--mode <mode>", "Octal permissions, e.g. 0644 (default: the local file's)")
    .action(async (paths, opts) => await push(ctx, paths, opts));

  file.command("pull")
    .usage("[options] NAME/PATH... TARGET")
    .description("Pull files from instances (TARGET - writes one file to stdout)")
    .argument("<paths...>", "NAME/PATH... then the local TARGET (a directory for several)")
    .option("-r, --recursive", "Pull directories recursively, with their modes and symlinks")
    .action(async (paths, opts) => await pull(ctx, paths, opts));

  file.command("delete")
    .alias("rm")
    .description("Delete files, symlinks or empty directories in instances")
    .usage("NAME/PATH...")
    .argument("<paths...>", "NAME/PATH... to delete")
    .action(async (paths) => {
      for (const spec of paths) {
        const { name, path } = parseRemotePath(spec);
        await new RemoteFiles(ctx.client, name).delete(path);
      }
    });

  return file;
}
