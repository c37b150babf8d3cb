import type { Context } from "hono";
import type { z } from "zod";
import { BadRequest, PayloadTooLarge } from "../agent/errors.ts";
import { concatBytes } from "../drivers/bytes.ts";

/** JSON request bodies larger than this are refused (uploads stream elsewhere). */
export const MAX_JSON_BODY = 4 * 2 ** 20;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a request body into memory, refusing more than `limit` bytes (whether or not the client
 * announced its length) with a 413.
 */
export async function readLimited(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > limit) {
    throw new PayloadTooLarge(`Request body too large: the limit is ${limit} bytes`);
  }
  if (!req.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > limit) {
        throw new PayloadTooLarge(`Request body too large: the limit is ${limit} bytes`);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(chunks);
}

export interface ParseOptions {
  /** An empty body is a 400 instead of `{}` (full replacements: PUT). */
  requireBody?: boolean;
}

/**
 * Reads and validates a JSON body: too large, not UTF-8, not JSON, not an object, or not the
 * schema's shape are all 400s (413 for size) with a clear message.
 */
export async function parseBody<T extends z.ZodType>(
  c: Context,
  schema: T,
  opts: ParseOptions = {},
): Promise<z.infer<T>> {
  const bytes = await readLimited(c.req.raw, MAX_JSON_BODY);
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new BadRequest("Invalid body: not valid UTF-8");
  }
  if (text.trim() === "" && opts.requireBody) {
    throw new BadRequest("Missing request body: send the JSON object to store");
  }
  let raw: unknown;
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch (err) {
    const why = err instanceof RangeError ? "nested too deeply" : messageOf(err);
    throw new BadRequest(`Invalid JSON body: ${why}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new BadRequest("Invalid body: expected a JSON object");
  }
  return schema.parse(raw);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `?recursion=N` as a number (0 when absent). */
export function recursion(c: Context): number {
  const raw = c.req.query("recursion") ?? "0";
  if (!/^[0-9]$/.test(raw)) throw new BadRequest("recursion must be 0, 1 or 2");
  return Number(raw);
}
