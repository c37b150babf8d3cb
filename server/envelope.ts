/** The Incus response envelope: sync, async (operation) and error bodies (contract/responses.ts). */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { DomainError, messageOf } from "../contract/errors.ts";
import type { AsyncEnvelope, Operation, SyncEnvelope } from "../contract/responses.ts";
import { operationUrl } from "../contract/urls.ts";

/**
 * An answer's JSON, as `c.json()` sends it (headers set on `c` kept) but untyped: Hono's typed
 * `c.json()` works out the JSON form of every answer type, deep enough for the type checker to
 * give up now and then (TS2589) on the contract's nested types.
 */
export function json(c: Context, body: unknown, status: number): Response {
  return c.body(JSON.stringify(body), status as ContentfulStatusCode, {
    "Content-Type": "application/json",
  });
}

export function sync<T>(
  c: Context,
  metadata: T,
  opts: { status?: number; etag?: string } = {},
) {
  if (opts.etag) c.header("ETag", `"${opts.etag}"`);
  const body: SyncEnvelope<T> = {
    type: "sync",
    status: "Success",
    status_code: 200,
    operation: "",
    error_code: 0,
    error: "",
    metadata,
  };
  return json(c, body, opts.status ?? 200);
}

export function async(c: Context, op: Operation) {
  const url = operationUrl(op.id);
  c.header("Location", url);
  const body: AsyncEnvelope = {
    type: "async",
    status: "Operation created",
    status_code: 100,
    operation: url,
    error_code: 0,
    error: "",
    metadata: op,
  };
  return json(c, body, 202);
}

/** Maps any thrown value to an HTTP status and message; the one place errors become HTTP. */
export function toHttpError(err: unknown): { status: number; message: string } {
  if (err instanceof DomainError) return { status: err.status, message: err.message };
  if (err instanceof z.ZodError) return { status: 400, message: zodMessage(err) };
  if (err instanceof URIError) {
    return { status: 400, message: "Invalid URL: malformed percent-encoding" };
  }
  const code = (err as { code?: unknown })?.code;
  // SQLite says SQLITE_FULL (13) when the state dir's disk is full.
  const sqliteFull = code === "ERR_SQLITE_ERROR" && (err as { errcode?: unknown }).errcode === 13;
  if (code === "ENOSPC" || code === "EDQUOT" || sqliteFull) {
    return { status: 507, message: `Not enough disk space on the host: ${messageOf(err)}` };
  }
  if (code === "ENAMETOOLONG") return { status: 400, message: "File name too long" };
  return { status: 500, message: messageOf(err) };
}

export function zodMessage(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return "Invalid request";
  const path = issue.path.join(".");
  if (issue.code === "unrecognized_keys") {
    return `Unknown field${issue.keys.length > 1 ? "s" : ""} ${
      issue.keys.map((k) => `"${path ? `${path}.` : ""}${k}"`).join(", ")
    }`;
  }
  return path ? `Invalid field "${path}": ${issue.message}` : `Invalid request: ${issue.message}`;
}
