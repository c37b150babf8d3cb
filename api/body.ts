import type { Context } from "hono";
import type { z } from "zod";
import { BadRequest } from "../agent/errors.ts";

/** Reads and validates a JSON body; bad JSON and bad shapes are 400s with a clear message. */
export async function parseBody<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch (err) {
    throw new BadRequest(`Invalid JSON body: ${err instanceof Error ? err.message : err}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new BadRequest("Invalid body: expected a JSON object");
  }
  return schema.parse(raw);
}

/** `?recursion=N` as a number (0 when absent). */
export function recursion(c: Context): number {
  const r = Number(c.req.query("recursion") ?? "0");
  if (!Number.isInteger(r) || r < 0) throw new BadRequest("recursion must be 0, 1 or 2");
  return r;
}
