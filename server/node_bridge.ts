/**
 * Serves the app on a `node:http`/`node:https` server: each request becomes a web `Request` for
 * `app.fetch`, its `Response` streams back with back-pressure, and upgrades go where the route
 * sent them (a websocket through the `ws` package, or the raw connection after a 101). Deno's own
 * server cannot ask a TLS client for its certificate nor hand over a raw connection; node's can.
 */
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import type { Caller, Connection, ConnectionEnv, RawStream } from "./connection.ts";
import { messageOf } from "../contract/errors.ts";
import { errorBody } from "../contract/responses.ts";

/** The part of the `ws` package's socket used here (the package ships no types). */
interface NodeWebSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  binaryType: "nodebuffer" | "arraybuffer" | "fragments";
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  on(event: "message", listener: (data: ArrayBuffer | Uint8Array, isBinary: boolean) => void): void;
  on(event: "close", listener: (code: number, reason: Uint8Array) => void): void;
  on(event: "error", listener: (err: Error) => void): void;
}

interface WebSocketServer {
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Uint8Array,
    done: (ws: NodeWebSocket) => void,
  ): void;
}

type WebSocketServerClass = new (
  opts: { noServer: true; maxPayload: number },
) => WebSocketServer;

let websockets: Promise<WebSocketServer> | undefined;

/** The `ws` package's server, loaded at the first websocket (an idle daemon never needs it). */
function websocketServer(): Promise<WebSocketServer> {
  websockets ??= import("ws").then((m) => {
    const Server = m.WebSocketServer as unknown as WebSocketServerClass;
    return new Server({ noServer: true, maxPayload: MAX_WS_MESSAGE });
  });
  return websockets;
}

/** The largest websocket message a client may send (exec input comes in small chunks). */
const MAX_WS_MESSAGE = 8 * 2 ** 20;

export interface BridgeOptions {
  fetch: (req: Request, env: ConnectionEnv) => Response | Promise<Response>;
  /** Who is at the other end of a connection. */
  callerOf: (socket: Socket) => Caller;
  log: (msg: string) => void;
}

/** A refused upload is read and dropped up to this much, so the client can read the refusal. */
export const MAX_DRAIN_BYTES = 64 * 2 ** 20;
/** ... as long as the client keeps sending: it may pause this long at most. */
const DRAIN_MS = 10_000;

/** Requests whose unread body is being dropped. */
const dropping = new WeakSet<IncomingMessage>();

/**
 * Reads and drops what is left of a request body, bounded in bytes and time, rather than
 * resetting the connection: over TCP a reset can destroy the answer before the client reads it.
 */
export function dropRest(req: IncomingMessage): void {
  if (dropping.has(req) || req.complete || req.destroyed) return;
  dropping.add(req);
  let dropped = 0;
  // A client that stops sending is cut off after DRAIN_MS; one that keeps sending, at the cap.
  let timer = setTimeout(() => req.destroy(), DRAIN_MS);
  req.on("data", (chunk: Uint8Array) => {
    dropped += chunk.byteLength;
    clearTimeout(timer);
    if (dropped > MAX_DRAIN_BYTES) req.destroy();
    else timer = setTimeout(() => req.destroy(), DRAIN_MS);
  });
  req.once("close", () => clearTimeout(timer));
  req.once("end", () => clearTimeout(timer));
  req.resume();
}

/**
 * A request body as a web stream, read as the app pulls it. When the app stops reading (a body
 * too large, a refused upload), the rest is dropped (`dropRest`).
 */
export function bodyOf(req: IncomingMessage): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.on("data", (chunk: Uint8Array) => {
        if (dropping.has(req)) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) req.pause();
      });
      req.once("end", () => dropping.has(req) || controller.close());
      req.once("error", (err) => dropping.has(req) || controller.error(err));
    },
    pull() {
      req.resume();
    },
    cancel() {
      dropRest(req);
    },
  }, { highWaterMark: 256 * 1024, size: (chunk) => chunk.byteLength });
}

/** The request as the app sees it: the path and query the client sent, on a fixed origin. */
export function toRequest(req: IncomingMessage, signal?: AbortSignal): Request {
  // The target is a path, or absolute (`http://outpost/1.0`, as Deno's unix-proxy client sends
  // it): either way only its path and query are kept.
  let url: URL;
  try {
    const target = req.url ?? "/";
    const path = /^https?:\/\//i.test(target)
      ? (() => {
        const u = new URL(target);
        return u.pathname + u.search;
      })()
      : target.startsWith("/")
      ? target
      : "/";
    // Appended, not resolved: a target such as `//evil/1.0` stays a path on this server.
    url = new URL(`https://localhost${path}`);
  } catch {
    url = new URL("https://localhost/");
  }
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i], raw[i + 1]);
    } catch { /* a header the fetch API cannot hold is dropped */ }
  }
  const method = req.method ?? "GET";
  const body = method === "GET" || method === "HEAD" ? undefined : bodyOf(req);
  return new Request(url, { method, headers, body, signal, duplex: "half" } as RequestInit);
}

/** Writes a response, its body streamed as the client takes it; stops if the client goes. */
async function writeResponse(
  res: ServerResponse,
  resp: Response,
  req?: IncomingMessage,
): Promise<void> {
  const headers: Record<string, string> = {};
  resp.headers.forEach((v, k) => headers[k] = v);
  res.writeHead(resp.status, headers);
  if (!resp.body) {
    await endAfterRequest(res, req);
    return;
  }
  const reader = resp.body.getReader();
  let gone = false;
  res.once("close", () => {
    gone = true;
    reader.cancel().catch(() => {});
  });
  try {
    while (!gone) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise<void>((r) => {
          res.once("drain", r);
          res.once("close", r);
        });
      }
    }
  } catch { /* the body failed half-way: the client sees a cut answer */ }
  await endAfterRequest(res, req);
}

/**
 * Ends a response, after its request has been read to the end when the connection closes with
 * it: node closes a `Connection: close` connection as soon as the response ends, and a close
 * while the client still sends resets it, which can destroy the answer before the client reads
 * it. The rest of an unread body is dropped (`dropRest`, bounded).
 */
async function endAfterRequest(res: ServerResponse, req?: IncomingMessage): Promise<void> {
  if (req && !req.complete && !req.destroyed) {
    dropRest(req);
    // A kept-alive connection stays open while the rest is dropped: the answer can end now
    // (a client that stops sending on an early answer, as curl does, gets it at once).
    if (!res.shouldKeepAlive) {
      await new Promise<void>((r) => {
        req.once("end", r);
        req.once("close", r);
      });
    }
  }
  res.end();
}

/** An error in the Incus envelope (for answers made outside an app). */
export function errorResponse(status: number, message: string): Response {
  return new Response(JSON.stringify(errorBody(message, status)), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/** An HTTP/1.1 answer written straight to a socket (an upgrade request that was refused). */
async function writeRaw(socket: Duplex, resp: Response): Promise<void> {
  const body = new Uint8Array(await resp.arrayBuffer());
  const lines = [`HTTP/1.1 ${resp.status} ${STATUS_CODES[resp.status] ?? "Error"}`];
  resp.headers.forEach((v, k) => {
    if (k !== "content-length" && k !== "connection") lines.push(`${k}: ${v}`);
  });
  lines.push(`Content-Length: ${body.length}`, "Connection: close", "", "");
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n")), body]));
}

type Listener<E> = ((e: E) => void) | null;

/**
 * The `ws` package's socket behind the part of the WHATWG WebSocket interface the daemon uses. A
 * route gets it at once, as from `Deno.upgradeWebSocket`; it opens when the 101 has gone out.
 */
export class LateWebSocket {
  binaryType: BinaryType = "blob";
  onopen: Listener<Event> = null;
  onmessage: Listener<{ data: string | ArrayBuffer }> = null;
  onclose: Listener<{ code: number; reason: string }> = null;
  onerror: Listener<Event> = null;
  #ws?: NodeWebSocket;
  #closing?: [number | undefined, string | undefined];
  #dead = false;

  get readyState(): number {
    if (this.#dead) return WebSocket.CLOSED;
    return this.#ws?.readyState ?? WebSocket.CONNECTING;
  }

  get bufferedAmount(): number {
    return this.#ws?.bufferedAmount ?? 0;
  }

  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    if (!this.#ws || this.#ws.readyState !== WebSocket.OPEN) {
      throw new DOMException("The websocket is not open", "InvalidStateError");
    }
    this.#ws.send(data as string | ArrayBuffer);
  }

  close(code?: number, reason?: string): void {
    if (this.#ws) this.#ws.close(code, reason);
    else this.#closing = [code, reason];
  }

  /** The upgrade is done: events flow from now on. */
  attach(ws: NodeWebSocket): void {
    this.#ws = ws;
    ws.binaryType = this.binaryType === "arraybuffer" ? "arraybuffer" : "nodebuffer";
    ws.on("message", (data, isBinary) => {
      this.onmessage?.({ data: isBinary ? data as ArrayBuffer : String(data) });
    });
    ws.on("close", (code, reason) => {
      this.#dead = true;
      this.onclose?.({ code, reason: String(reason) });
    });
    ws.on("error", () => this.onerror?.(new Event("error")));
    this.onopen?.(new Event("open"));
    if (this.#closing) ws.close(...this.#closing);
  }

  /** The upgrade failed: the socket never opens. */
  fail(): void {
    this.#dead = true;
    this.onclose?.({ code: 1006, reason: "" });
  }
}

/** A raw connection after a 101, as web streams (bytes the parser read ahead come first). */
function rawStream(socket: Duplex, head: Uint8Array): RawStream {
  if (head.length > 0) socket.unshift(head);
  const { readable, writable } = Duplex.toWeb(socket);
  return {
    readable: readable as ReadableStream<Uint8Array>,
    writable: writable as WritableStream<Uint8Array>,
  };
}

/**
 * Options every node server of the daemon is made with: no Host header required (clients send
 * none or `localhost:None` on the unix socket), and request timeouts checked every second.
 */
export const SERVER_OPTIONS = { requireHostHeader: false, connectionsCheckingInterval: 1_000 };
/** A client has this long to send a request's headers (slow ones get a 408). */
export const HEADERS_TIMEOUT_MS = 8_000;

/** Puts the app on a node server: plain requests and upgrades both. */
export function serveApp(server: Server, opts: BridgeOptions): void {
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = 0; // uploads may take long; headers are bounded
  const refuse = () => {
    throw new TypeError("Not a websocket upgrade request");
  };

  // What node's parser refuses (malformed HTTP, headers too large, too slow) is answered in the
  // error envelope too, then the connection closes.
  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const [status, message] = err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request headers too large"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? [408, "Request timed out"]
      : [400, `Malformed HTTP request: ${err.message}`];
    void writeRaw(socket, errorResponse(status, message)).catch(() => socket.destroy());
  });

  server.on("request", async (req: IncomingMessage, res: ServerResponse) => {
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    const connection: Connection = {
      caller: opts.callerOf(req.socket),
      upgradeWebSocket: refuse,
    };
    let request: Request;
    try {
      request = toRequest(req, abort.signal);
    } catch (err) {
      // The fetch API refuses some methods (TRACE, CONNECT, TRACK) and malformed names.
      await writeResponse(res, errorResponse(405, `Method not allowed: ${messageOf(err)}`));
      return;
    }
    try {
      const resp = await opts.fetch(request, { connection });
      await writeResponse(res, resp, req);
    } catch (err) {
      opts.log(`error: ${messageOf(err)}`);
      if (!res.headersSent) await writeResponse(res, errorResponse(500, "Internal error"));
      else res.end();
    }
  });

  server.on("upgrade", async (req: IncomingMessage, socket: Duplex, head: Uint8Array) => {
    socket.on("error", () => socket.destroy());
    let late: LateWebSocket | undefined;
    let raw: { protocol: string; resolve: (s: RawStream) => void } | undefined;
    const connection: Connection = {
      caller: opts.callerOf(socket as Socket),
      upgradeWebSocket: () => {
        if (late || raw) refuse();
        late = new LateWebSocket();
        return {
          socket: late as unknown as WebSocket,
          response: new Response(null, { status: 101 }),
        };
      },
      upgradeRaw: (_req, protocol) => {
        if (late || raw) refuse();
        const { promise, resolve } = Promise.withResolvers<RawStream>();
        raw = { protocol, resolve };
        return { response: new Response(null, { status: 101 }), stream: promise };
      },
    };
    try {
      let request: Request;
      try {
        request = toRequest(req);
      } catch (err) {
        await writeRaw(socket, errorResponse(405, `Method not allowed: ${messageOf(err)}`));
        return;
      }
      const resp = await opts.fetch(request, { connection });
      if (resp.status === 101 && late) {
        const ws = late;
        (await websocketServer()).handleUpgrade(req, socket, head, (client) => ws.attach(client));
        // handleUpgrade answers and destroys a socket it refuses without calling back.
        socket.once("close", () => ws.readyState === WebSocket.CONNECTING && ws.fail());
      } else if (resp.status === 101 && raw) {
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${raw.protocol}\r\nConnection: Upgrade\r\n\r\n`,
        );
        raw.resolve(rawStream(socket, head));
      } else {
        late?.fail();
        await writeRaw(socket, resp);
      }
    } catch (err) {
      opts.log(`error: ${messageOf(err)}`);
      late?.fail();
      socket.destroy();
    }
  });
}
