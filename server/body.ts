import type { Context } from "hono";
import type { z } from "zod";
import { BadRequest, PayloadTooLarge } from "../contract/errors.ts";
import { concatBytes } from "../contract/bytes.ts";

/** JSON request bodies larger than this are refused (uploads stream elsewhere). */
export const MAX_JSON_BODY = 1 * 2 ** 20;

// ignoreBOM keeps a byte order mark in the text, so JSON.parse refuses it as it should.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Reads a body (a request's, or an answer's) into memory, refusing more than `limit` bytes
 * (whether or not its length was announced) with a 413.
 */
export async function readLimited(
  req: Pick<Request, "headers" | "body">,
  limit: number,
): Promise<Uint8Array> {
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
        // The rest is not wanted: its source is told (a request's is dropped by the bridge, an
        // answer relayed from a host ends its stream).
        await reader.cancel().catch(() => {});
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
  checkStrings(raw);
  return schema.parse(raw);
}

/** No API body nests deeper than this; deeper ones are refused before anything walks them. */
const MAX_DEPTH = 32;

/**
 * Every string of a body, keys included, must be one that survives storage and argv unchanged:
 * well-formed Unicode (a lone surrogate such as `\ud800` would be stored as U+FFFD) and no NUL.
 * Walked with an explicit stack: a body nested 100,000 deep is a 400, not a stack overflow.
 */
export function checkStrings(body: unknown): void {
  const bad = (s: string) => !s.isWellFormed() || s.includes("\0");
  const refuse = (what: string, path: string): never => {
    const where = path ? ` in field "${path}"` : "";
    throw new BadRequest(`Invalid ${what}${where}: NUL bytes and lone surrogates are refused`);
  };
  // Containers only go on the stack (with their path); strings are checked where they are met.
  const stack: [object, string, number][] = [];
  const visit = (value: unknown, path: () => string, depth: number) => {
    if (typeof value === "string") {
      if (bad(value)) refuse("string", path());
    } else if (value !== null && typeof value === "object") {
      if (depth >= MAX_DEPTH) {
        throw new BadRequest(`Invalid body: nested deeper than ${MAX_DEPTH}`);
      }
      stack.push([value, path(), depth]);
    }
  };
  visit(body, () => "", 0);
  while (stack.length > 0) {
    const [value, path, depth] = stack.pop()!;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) visit(value[i], () => `${path}[${i}]`, depth + 1);
      continue;
    }
    for (const k in value) {
      if (bad(k)) refuse("field name", path);
      visit((value as Record<string, unknown>)[k], () => (path ? `${path}.${k}` : k), depth + 1);
    }
  }
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
