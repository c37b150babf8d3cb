/**
 * `GET/HEAD/POST/DELETE /1.0/instances/{name}/files?path=`: the file API the LXD 5.0 client
 * (`lxc file push/pull/delete`) and the Incus client speak. Metadata travels in headers, sent in
 * both spellings (`X-LXD-uid` and `X-Incus-uid`, ...); mode is octal with a leading 0 ("0644").
 */
import type { Context } from "hono";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import type { FileInfo, FileWrite } from "../../contract/files.ts";
import { readLimited } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";

const PREFIXES = ["X-Incus-", "X-LXD-"];
const TYPES: FileWrite["type"][] = ["file", "directory", "symlink"];

/** Longest path the kernel takes (PATH_MAX less the NUL), and longest name in it. */
const MAX_PATH = 4095;
const MAX_NAME = 255;

/** `?path=`, required, made absolute as Incus does; refused when no kernel could take it. */
export function pathParam(c: Context): string {
  const raw = c.req.query("path");
  if (!raw) throw new BadRequest("Missing path argument: add ?path=/some/file");
  const path = raw.startsWith("/") ? raw : `/${raw}`;
  if (path.includes("\0")) throw new BadRequest("Invalid path: NUL bytes are not allowed");
  const enc = new TextEncoder();
  if (enc.encode(path).length > MAX_PATH) {
    throw new BadRequest(`Invalid path: longer than ${MAX_PATH} bytes`);
  }
  if (path.split("/").some((part) => enc.encode(part).length > MAX_NAME)) {
    throw new BadRequest(`Invalid path: a name in it is longer than ${MAX_NAME} bytes`);
  }
  return path;
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
  if (!TYPES.includes(type as FileWrite["type"])) {
    throw new BadRequest(`Invalid file type "${type}": expected file, directory or symlink`);
  }
  const write = header(c, "write") ?? "overwrite";
  if (write !== "overwrite" && write !== "append") {
    throw new BadRequest(`Invalid write mode "${write}": expected overwrite or append`);
  }
  const mode = header(c, "mode");
  return {
    type: type as FileWrite["type"],
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
    // Devices, FIFOs and sockets show as files (as Incus shows them); reading one is refused.
    type: info.type === "other" ? "file" : info.type,
  };
  const out: Record<string, string> = {};
  for (const p of PREFIXES) {
    for (const [k, v] of Object.entries(values)) out[`${p}${k}`] = v;
  }
  return out;
}

/** A symlink's target travels as the request body: no more than a path. */
const MAX_SYMLINK_BODY = MAX_PATH;

export function fileRoutes(agent: Agent): Route[] {
  const { instances } = agent;

  // Hono answers HEAD with this GET handler (and drops the body): only stat then.
  const pull: Handler = async (c) => {
    const name = c.req.param("name")!;
    const path = pathParam(c);
    if (c.req.method === "HEAD") {
      const info = await instances.fileStat(name, path);
      for (const [k, v] of Object.entries(infoHeaders(info))) c.header(k, v);
      if (info.type === "file") {
        c.header("Content-Type", "application/octet-stream");
        c.header("Content-Length", String(info.size));
      }
      return c.body(null, 200);
    }
    const got = await instances.fileGet(name, path);
    if (!("body" in got)) {
      for (const [k, v] of Object.entries(infoHeaders(got))) c.header(k, v);
      if (got.type === "directory") return sync(c, got.entries ?? []);
      return c.body(new TextEncoder().encode(got.target ?? ""), 200, {
        "Content-Type": "application/octet-stream",
      });
    }
    // Streamed with back-pressure: the client's pace is the helper's pace.
    for (const [k, v] of Object.entries(infoHeaders(got.info))) c.header(k, v);
    return c.body(got.body, 200, { "Content-Type": "application/octet-stream" });
  };

  const push: Handler = async (c) => {
    const name = c.req.param("name")!;
    const path = pathParam(c);
    const write = parseWrite(c);
    if (write.type === "symlink") {
      write.data = await readLimited(c.req.raw, MAX_SYMLINK_BODY);
    } else if (write.type === "file") {
      write.data = c.req.raw.body ?? new Uint8Array();
    }
    await instances.fileWrite(name, path, write);
    return sync(c, {});
  };

  const remove: Handler = async (c) => {
    await instances.fileRemove(c.req.param("name")!, pathParam(c));
    return sync(c, {});
  };

  return table([
    ["GET", "/1.0/instances/:name/files", "trusted", pull],
    ["POST", "/1.0/instances/:name/files", "trusted", push],
    ["DELETE", "/1.0/instances/:name/files", "trusted", remove],
  ]);
}
