/**
 * The hub tunnel's wire. An agent keeps one websocket open to its hub (`TUNNEL_PATH`, dialed by the
 * agent, so it works behind NAT). Text frames carry control messages as JSON (the agent's hello,
 * heartbeats with its inventory, its events; the hub's welcome and orders). Binary frames carry
 * streams, each a request the hub sends to the agent's own API and its answer:
 *
 *     [type: u8][stream: u32 big-endian][payload]
 *
 * A stream opens with REQUEST (the hub's, JSON `TunnelRequest`), is answered with RESPONSE (JSON
 * `TunnelResponse`); each side's body follows as DATA frames closed by END. A 101 answer turns the
 * stream into a websocket (WS_TEXT, WS_BINARY, WS_CLOSE) or a raw byte stream (DATA, END). RESET
 * ends a stream at once, either way. Every DATA and WS payload counts against the receiver's
 * window (`STREAM_WINDOW` bytes a stream), which WINDOW frames (a u32 of bytes) give back as the
 * receiver's consumer takes them: a slow reader at either end holds the sender, never memory.
 */
import { z } from "zod";

/** Where an enrolled agent opens its tunnel on the hub. */
export const TUNNEL_PATH = "/fleet/v1/tunnel";
/** The tunnel protocol this build speaks (the hello says it; the hub refuses another). */
export const TUNNEL_PROTOCOL = 1;

export const Frame = {
  REQUEST: 1,
  RESPONSE: 2,
  DATA: 3,
  END: 4,
  RESET: 5,
  WINDOW: 6,
  WS_TEXT: 7,
  WS_BINARY: 8,
  WS_CLOSE: 9,
} as const;
export type FrameType = typeof Frame[keyof typeof Frame];

/** Bytes a side may send on a stream before the receiver gives some back. */
export const STREAM_WINDOW = 256 * 1024;
/** The largest payload of one DATA frame. */
export const MAX_CHUNK = 64 * 1024;
/** The largest binary frame either side accepts (a websocket message relayed whole, plus the header). */
export const MAX_FRAME = 8 * 2 ** 20 + 5;
/** Streams open at once on one tunnel; the hub answers more with a 503. */
export const MAX_STREAMS = 128;

const HEADER = 5;

export interface DecodedFrame {
  type: FrameType;
  stream: number;
  payload: Uint8Array;
}

export function encodeFrame(type: FrameType, stream: number, payload?: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + (payload?.byteLength ?? 0));
  const view = new DataView(out.buffer);
  view.setUint8(0, type);
  view.setUint32(1, stream);
  if (payload) out.set(payload, HEADER);
  return out;
}

/** A frame, or undefined when the bytes are not one (too short, too long, an unknown type). */
export function decodeFrame(buf: Uint8Array): DecodedFrame | undefined {
  if (buf.byteLength < HEADER || buf.byteLength > MAX_FRAME) return undefined;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = view.getUint8(0);
  if (type < Frame.REQUEST || type > Frame.WS_CLOSE) return undefined;
  return { type: type as FrameType, stream: view.getUint32(1), payload: buf.subarray(HEADER) };
}

export function encodeU32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

export function decodeU32(buf: Uint8Array): number | undefined {
  if (buf.byteLength !== 4) return undefined;
  return new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0);
}

const HeaderListSchema = z.array(z.tuple([z.string().max(256), z.string().max(16_384)])).max(
  128,
);

/** A request the hub sends down a stream: the agent serves it with its own API. */
export const TunnelRequestSchema = z.strictObject({
  method: z.string().regex(/^[A-Z]{1,16}$/),
  /** Path and query on the agent (`/1.0/instances?recursion=1`). */
  path: z.string().startsWith("/").max(16_384),
  headers: HeaderListSchema,
});
export type TunnelRequest = z.infer<typeof TunnelRequestSchema>;

/** The agent's answer to a stream's request. */
export const TunnelResponseSchema = z.strictObject({
  status: z.number().int().min(100).max(599),
  headers: HeaderListSchema,
});
export type TunnelResponse = z.infer<typeof TunnelResponseSchema>;

/** A JSON payload parsed against `schema`, or undefined. */
export function parseJsonPayload<T>(schema: z.ZodType<T>, payload: Uint8Array): T | undefined {
  try {
    const r = schema.safeParse(JSON.parse(new TextDecoder().decode(payload)));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function jsonPayload(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}
