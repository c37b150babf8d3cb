/**
 * `GET/HEAD/POST/DELETE /1.0/instances/{name}/files?path=`: the file API the LXD 5.0 client
 * (`lxc file push/pull/delete`) and the Incus client speak. Metadata travels in headers, sent in
 * both spellings (`X-LXD-uid` and `X-Incus-uid`, ...); mode is octal with a leading 0 ("0644").
 */
import { type Context, Hono } from "hono";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../agent/errors.ts";
import type { FileInfo, FileType, FileWrite } from "../../drivers/files.ts";
import { sync } from "../envelope.ts";

const PREFIXES = ["X-Incus-", "X-LXD-"];
const TYPES: FileType[] = ["file", "directory", "symlink"];

/** `?path=`, required, made absolute as Incus does. */
function pathParam(c: Context): string {
  const path = c.req.query("path");
  if (!path) throw new BadRequest("Missing path argument: add ?path=/some/file");
  return path.startsWith("/") ? path : `/${path}`;
}

/** A file header in either spelling (`X-Incus-` first). */
function header(c: Context, key: string): string | undefined {
  for (const p of PREFIXES) {
    const v = c.req.header(`${p}${key}`);
    if (v !== undefined && v !== "") return v;
  }
  return undefined;
}

/** uid/gid: base 10; -1 (or absent) keeps the current one. */
function idHeader(c: Context, key: "uid" | "gid"): number | undefined {
  const raw = header(c, key);
  if (raw === undefined || raw === "-1") return undefined;
  if (!/^\d{1,10}$/.test(raw) || Number(raw) > 0xfffffffe) {
    throw new BadRequest(`Invalid X-Incus-${key} header "${raw}": expected a whole number`);
  }
  return Number(raw);
}

/** Mode as the Incus and LXD servers read it: a leading 0 means octal, else base 10. */
export function parseModeHeader(raw: string): number {
  let mode = NaN;
  if (/^0[oO]?[0-7]*$/.test(raw)) mode = parseInt(raw.replace(/^0[oO]?/, "") || "0", 8);
  else if (/^0[xX][0-9a-fA-F]+$/.test(raw)) mode = parseInt(raw.slice(2), 16);
  else if (/^[1-9]\d*$/.test(raw)) mode = Number(raw);
  if (!Number.isSafeInteger(mode)) {
    throw new BadRequest(`Invalid X-Incus-mode header "${raw}": expected octal like 0644`);
  }
  return mode & 0o7777;
}

/** Octal with a leading 0, so both `strconv.ParseInt(s, 0, 0)` and humans read it right. */
export function formatMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

function parseWrite(c: Context): FileWrite {
  const type = header(c, "type") ?? "file";
  if (!TYPES.includes(type as FileType)) {
    throw new BadRequest(`Invalid file type "${type}": expected file, directory or symlink`);
  }
  const write = header(c, "write") ?? "overwrite";
  if (write !== "overwrite" && write !== "append") {
    throw new BadRequest(`Invalid write mode "${write}": expected overwrite or append`);
  }
  const mode = header(c, "mode");
  return {
    type: type as FileType,
    uid: idHeader(c, "uid"),
    gid: idHeader(c, "gid"),
    mode: mode === undefined || mode === "-1" ? undefined : parseModeHeader(mode),
    append: write === "append",
  };
}

function infoHeaders(info: FileInfo): Record<string, string> {
  const values = {
    uid: String(info.uid),
    gid: String(info.gid),
    mode: formatMode(info.mode),
    type: info.type,
  };
  const out: Record<string, string> = {};
  for (const p of PREFIXES) {
    for (const [k, v] of Object.entries(values)) out[`${p}${k}`] = v;
  }
  return out;
}

export function fileRoutes(agent: Agent): Hono {
  const app = new Hono();
  const route = "/1.0/instances/:name/files";

  /** The instance, its driver's file access, the path and the event source. */
  const target = (c: Context) => {
    const inst = agent.instances.get(c.req.param("name") ?? "");
    const path = pathParam(c);
    const files = agent.drivers.get(inst.type).files;
    if (!files) throw new BadRequest("File access is not supported for this instance type");
    return { inst, files, path, source: `/1.0/instances/${inst.name}` };
  };

  // Hono answers HEAD with this GET handler (and drops the body): only stat then.
  app.get(route, async (c) => {
    const { inst, files, path, source } = target(c);
    const info = await files.stat(inst, path);
    for (const [k, v] of Object.entries(infoHeaders(info))) c.header(k, v);
    if (c.req.method === "HEAD") {
      if (info.type === "file") {
        c.header("Content-Type", "application/octet-stream");
        c.header("Content-Length", String(info.size));
      }
      return c.body(null, 200);
    }
    agent.events.lifecycle("instance-file-retrieved", source, { path });
    if (info.type === "directory") return sync(c, info.entries ?? []);
    const data = info.type === "symlink"
      ? new TextEncoder().encode(info.target ?? "")
      : await files.read(inst, path) as Uint8Array<ArrayBuffer>;
    return c.body(data, 200, { "Content-Type": "application/octet-stream" });
  });

  app.post(route, async (c) => {
    const { inst, files, path, source } = target(c);
    const write = parseWrite(c);
    write.data = new Uint8Array(await c.req.arrayBuffer());
    await files.write(inst, path, write);
    agent.events.lifecycle("instance-file-pushed", source, { path });
    return sync(c, {});
  });

  app.delete(route, async (c) => {
    const { inst, files, path, source } = target(c);
    await files.remove(inst, path);
    agent.events.lifecycle("instance-file-deleted", source, { path });
    return sync(c, {});
  });

  return app;
}
