/**
 * The tunnel's multiplexer (the wire is `contract/tunnel.ts`): many streams over the one websocket
 * an agent dialed to its hub, each with its own flow-control window, so a slow reader holds only
 * its own stream. The same class runs at both ends: the hub opens streams (`open`), the agent is
 * handed them (`onStream`). Anything the peer sends that breaks the protocol closes the tunnel.
 */
import {
  decodeFrame,
  decodeU32,
  encodeFrame,
  encodeU32,
  Frame,
  type FrameType,
  jsonPayload,
  MAX_CHUNK,
  MAX_STREAMS,
  parseJsonPayload,
  STREAM_WINDOW,
  type TunnelRequest,
  TunnelRequestSchema,
  type TunnelResponse,
  TunnelResponseSchema,
} from "../contract/tunnel.ts";

/** The websocket under a tunnel, as either end holds it. */
export interface TunnelCarrier {
  send(data: Uint8Array | string): void;
  close(code?: number, reason?: string): void;
}

/** How far a websocket relayed on a stream may run ahead of its reader before the stream ends. */
const MAX_WS_OVERDRAFT = 16 * 2 ** 20;

export class StreamReset extends Error {}

/** Websocket messages arriving on a stream after its 101. */
export interface StreamWebSocketHandler {
  message(data: string | Uint8Array): void;
  close(code: number, reason: string): void;
}

/** One request and its answer (then, after a 101, one websocket or raw byte stream). */
export class TunnelStream {
  /** Bytes from the peer: the body it sends (or the raw stream after a 101). */
  readonly readable: ReadableStream<Uint8Array>;
  /** The answer's head (the hub's side: settles when the agent answers). */
  readonly response: Promise<TunnelResponse>;
  #resolveResponse!: (r: TunnelResponse) => void;
  #rejectResponse!: (e: Error) => void;
  #credit = STREAM_WINDOW;
  #creditWaiters: (() => void)[] = [];
  #queue: Uint8Array[] = [];
  #ended = false;
  #discard = false;
  #pullWaiter?: () => void;
  #unacked = 0;
  #endSent = false;
  #error?: Error;
  #ws?: StreamWebSocketHandler;
  #wsEarly: { data?: string | Uint8Array; close?: [number, string] }[] = [];

  constructor(
    readonly id: number,
    private tunnel: Tunnel,
    /** When our reader cancels: reset the stream (the hub's answer to a client that left). */
    cancelResets: boolean,
  ) {
    this.response = new Promise((resolve, reject) => {
      this.#resolveResponse = resolve;
      this.#rejectResponse = reject;
    });
    this.response.catch(() => {});
    this.readable = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (this.#queue.length === 0 && !this.#ended && !this.#error) {
          await new Promise<void>((r) => this.#pullWaiter = r);
        }
        const chunk = this.#queue.shift();
        if (chunk) {
          controller.enqueue(chunk);
          this.#ack(chunk.byteLength);
        } else if (this.#error) controller.error(this.#error);
        else controller.close();
      },
      cancel: () => {
        if (cancelResets) this.reset("The reader went away");
        else {
          // The rest is read and dropped so the peer is never held (a refused upload).
          this.#discard = true;
          for (const c of this.#queue.splice(0)) this.#ack(c.byteLength);
        }
      },
    }, { highWaterMark: 0 });
  }

  get done(): boolean {
    return this.#error !== undefined || (this.#endSent && this.#ended);
  }

  /** Bytes sent and not yet given back by the peer's reader (a websocket's `bufferedAmount`). */
  get inFlight(): number {
    return Math.max(0, STREAM_WINDOW - this.#credit);
  }

  /** Sends the answer's head (the agent's side). */
  respond(head: TunnelResponse): void {
    this.#send(Frame.RESPONSE, jsonPayload(head));
  }

  /** Sends bytes, waiting for the peer's window. Throws StreamReset once the stream is reset. */
  async write(data: Uint8Array): Promise<void> {
    for (let off = 0; off < data.byteLength;) {
      while (this.#credit <= 0 && !this.#error) {
        await new Promise<void>((r) => this.#creditWaiters.push(r));
      }
      if (this.#error) throw this.#error;
      const n = Math.min(MAX_CHUNK, this.#credit, data.byteLength - off);
      this.#send(Frame.DATA, data.subarray(off, off + n));
      this.#credit -= n;
      off += n;
    }
  }

  /** Ends what this side sends. */
  end(): void {
    if (this.#endSent || this.#error) return;
    this.#endSent = true;
    this.#send(Frame.END);
    this.#settle();
  }

  /** Ends the stream at once, both ways. */
  reset(message = "Reset"): void {
    if (this.#error) return;
    this.#send(Frame.RESET, new TextEncoder().encode(message.slice(0, 200)));
    this.fail(new StreamReset(message));
  }

  /** Sends one websocket message (never waits: a peer that falls too far behind is reset). */
  sendWebSocket(data: string | Uint8Array): void {
    if (this.#error) return;
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    this.#send(typeof data === "string" ? Frame.WS_TEXT : Frame.WS_BINARY, bytes);
    this.#credit -= bytes.byteLength;
    if (this.#credit < -MAX_WS_OVERDRAFT) this.reset("The websocket's reader fell too far behind");
  }

  /** Closes the websocket: both ends are done with the stream. */
  closeWebSocket(code: number, reason: string): void {
    if (this.#error) return;
    const r = new TextEncoder().encode(reason.slice(0, 120));
    const payload = new Uint8Array(2 + r.byteLength);
    new DataView(payload.buffer).setUint16(0, code);
    payload.set(r, 2);
    this.#send(Frame.WS_CLOSE, payload);
    this.fail(new StreamReset("The websocket closed"), false);
  }

  /** Where websocket messages go (what came before is handed over at once). */
  onWebSocket(handler: StreamWebSocketHandler): void {
    this.#ws = handler;
    for (const m of this.#wsEarly.splice(0)) {
      if (m.close) handler.close(...m.close);
      else handler.message(m.data!);
    }
  }

  /** A frame for this stream, from the tunnel. False when it breaks the protocol. */
  receive(type: FrameType, payload: Uint8Array): boolean {
    switch (type) {
      case Frame.RESPONSE: {
        const head = parseJsonPayload(TunnelResponseSchema, payload);
        if (!head) return false;
        this.#resolveResponse(head);
        return true;
      }
      case Frame.DATA:
        if (this.#ended) return false;
        if (this.#discard) this.#ack(payload.byteLength);
        else {
          this.#queue.push(payload.slice());
          if (this.#queued() > STREAM_WINDOW) return false;
        }
        this.#wake();
        return true;
      case Frame.END:
        this.#ended = true;
        this.#wake();
        this.#settle();
        return true;
      case Frame.RESET:
        this.fail(new StreamReset(new TextDecoder().decode(payload) || "Reset by the peer"));
        return true;
      case Frame.WINDOW: {
        const n = decodeU32(payload);
        if (n === undefined) return false;
        this.#credit += n;
        for (const w of this.#creditWaiters.splice(0)) w();
        return true;
      }
      case Frame.WS_TEXT:
      case Frame.WS_BINARY: {
        const data = type === Frame.WS_TEXT ? new TextDecoder().decode(payload) : payload.slice();
        if (this.#ws) this.#ws.message(data);
        else if (this.#wsEarly.length < 1024) this.#wsEarly.push({ data });
        else return false;
        this.#ack(payload.byteLength, true);
        return true;
      }
      case Frame.WS_CLOSE: {
        const code = payload.byteLength >= 2
          ? new DataView(payload.buffer, payload.byteOffset).getUint16(0)
          : 1005;
        const reason = new TextDecoder().decode(payload.subarray(2));
        if (this.#ws) this.#ws.close(code, reason);
        else this.#wsEarly.push({ close: [code, reason] });
        this.fail(new StreamReset("The websocket closed"), false);
        return true;
      }
      default:
        return false;
    }
  }

  /** Ends the stream on this side (the tunnel closed, or a reset either way). */
  fail(err: Error, tellWebSocket = true): void {
    if (this.#error) return;
    this.#error = err;
    this.#rejectResponse(err);
    for (const w of this.#creditWaiters.splice(0)) w();
    this.#wake();
    if (tellWebSocket) this.#ws?.close(1006, err.message);
    this.tunnel.forget(this);
  }

  #queued(): number {
    let n = 0;
    for (const c of this.#queue) n += c.byteLength;
    return n;
  }

  #wake(): void {
    const w = this.#pullWaiter;
    this.#pullWaiter = undefined;
    w?.();
  }

  /** Gives bytes back to the peer once our reader has taken them (batched). */
  #ack(n: number, now = false): void {
    this.#unacked += n;
    if (this.#error) return;
    if (now || this.#unacked >= MAX_CHUNK || this.#queue.length === 0) {
      if (this.#unacked > 0) this.#send(Frame.WINDOW, encodeU32(this.#unacked));
      this.#unacked = 0;
    }
  }

  #settle(): void {
    if (this.#endSent && this.#ended) this.tunnel.forget(this);
  }

  #send(type: FrameType, payload?: Uint8Array): void {
    this.tunnel.sendFrame(type, this.id, payload);
  }
}

export interface TunnelOptions {
  /** A stream the peer opened (the agent's side): serve it. Unset: the peer may open none. */
  onStream?: (stream: TunnelStream, head: TunnelRequest) => void;
  /** A control message (a text frame). */
  onControl?: (text: string) => void;
  /** The tunnel broke the protocol or closed: why. */
  onClose?: (reason: string) => void;
}

export class Tunnel {
  #streams = new Map<number, TunnelStream>();
  #nextId = 1;
  #closed = false;

  constructor(private carrier: TunnelCarrier, private opts: TunnelOptions = {}) {}

  get streams(): number {
    return this.#streams.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Opens a stream with a request (the hub's side). Throws when too many are open. */
  open(head: TunnelRequest): TunnelStream {
    if (this.#closed) throw new StreamReset("The tunnel is closed");
    if (this.#streams.size >= MAX_STREAMS) {
      throw new StreamReset(`Too many requests in flight (${MAX_STREAMS})`);
    }
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 2) % 2 ** 32;
    const stream = new TunnelStream(id, this, true);
    this.#streams.set(id, stream);
    this.sendFrame(Frame.REQUEST, id, jsonPayload(head));
    return stream;
  }

  /** Sends a control message. */
  control(message: unknown): void {
    if (this.#closed) return;
    try {
      this.carrier.send(JSON.stringify(message));
    } catch (err) {
      // The connection went before its close was seen: the tunnel ends here, nothing throws.
      this.close(`The tunnel failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** A message from the carrier. */
  receive(data: string | ArrayBuffer | Uint8Array): void {
    if (this.#closed) return;
    if (typeof data === "string") {
      this.opts.onControl?.(data);
      return;
    }
    const frame = decodeFrame(data instanceof Uint8Array ? data : new Uint8Array(data));
    if (!frame) return this.#violation("A malformed frame");
    if (frame.type === Frame.REQUEST) {
      if (!this.opts.onStream || this.#streams.has(frame.stream)) {
        return this.#violation("A stream opened out of turn");
      }
      const head = parseJsonPayload(TunnelRequestSchema, frame.payload);
      if (!head) return this.#violation("A malformed request");
      const stream = new TunnelStream(frame.stream, this, false);
      if (this.#streams.size >= MAX_STREAMS) {
        stream.reset(`Too many requests in flight (${MAX_STREAMS})`);
        return;
      }
      this.#streams.set(frame.stream, stream);
      this.opts.onStream(stream, head);
      return;
    }
    // Frames for a stream that has ended cross its end on the wire: they are dropped.
    const stream = this.#streams.get(frame.stream);
    if (stream && !stream.receive(frame.type, frame.payload)) {
      this.#violation("A frame out of place");
    }
  }

  /** Ends every stream and closes the carrier. */
  close(reason = "The tunnel closed"): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#streams.values()]) s.fail(new StreamReset(reason));
    this.#streams.clear();
    try {
      this.carrier.close(1000, reason.slice(0, 120));
    } catch { /* already gone */ }
    this.opts.onClose?.(reason);
  }

  /** The stream is done: drop it. */
  forget(stream: TunnelStream): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
  }

  sendFrame(type: FrameType, stream: number, payload?: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.carrier.send(encodeFrame(type, stream, payload));
    } catch (err) {
      this.close(`The tunnel failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  #violation(what: string): void {
    this.close(`${what}: the tunnel is closed`);
  }
}
