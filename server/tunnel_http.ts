/**
 * HTTP over the tunnel's streams, both ends. The agent serves each stream with its own app
 * (`serveStream`): a web `Request` in, the app's `Response` out, websockets and raw upgrades
 * through a `Connection` like the listeners' own, so exec, console, events and SFTP run through
 * the hub as they run on the unix socket. The hub relays a client's request down a stream
 * (`relayRequest`) and the answer back, upgrading the client's connection when the agent did.
 */
import type { Caller, Connection, ConnectionEnv, RawStream } from "./connection.ts";
import type { TunnelRequest } from "../contract/tunnel.ts";
import { errorBody } from "../contract/responses.ts";
import type { StreamWebSocketHandler, Tunnel, TunnelStream } from "./tunnel.ts";

type Listener<E> = ((e: E) => void) | null;

/**
 * A websocket carried by a tunnel stream, behind the part of the WHATWG interface the app's
 * sessions use. A route gets it at once; it opens when the 101 has gone back down the stream.
 */
export class TunnelWebSocket {
  binaryType: BinaryType = "blob";
  onopen: Listener<Event> = null;
  onmessage: Listener<{ data: string | ArrayBuffer }> = null;
  onclose: Listener<{ code: number; reason: string }> = null;
  onerror: Listener<Event> = null;
  #state: number = WebSocket.CONNECTING;

  constructor(private stream: TunnelStream) {}

  get readyState(): number {
    return this.#state;
  }

  get bufferedAmount(): number {
    return this.stream.inFlight;
  }

  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    if (this.#state !== WebSocket.OPEN) {
      throw new DOMException("The websocket is not open", "InvalidStateError");
    }
    this.stream.sendWebSocket(typeof data === "string" ? data : bytesOf(data));
  }

  close(code = 1000, reason = ""): void {
    if (this.#state === WebSocket.CLOSED) return;
    const wasOpen = this.#state === WebSocket.OPEN;
    this.#state = WebSocket.CLOSED;
    if (wasOpen) this.stream.closeWebSocket(code, reason);
    else this.stream.reset("The websocket closed before it opened");
    this.onclose?.({ code, reason });
  }

  /** The 101 went out: messages flow. */
  open(): void {
    this.#state = WebSocket.OPEN;
    this.stream.onWebSocket({
      message: (data) => {
        if (this.#state !== WebSocket.OPEN) return;
        this.onmessage?.({
          data: typeof data === "string" ? data : data.buffer as ArrayBuffer,
        });
      },
      close: (code, reason) => {
        if (this.#state === WebSocket.CLOSED) return;
        this.#state = WebSocket.CLOSED;
        this.onclose?.({ code, reason });
      },
    });
    this.onopen?.(new Event("open"));
  }

  /** The upgrade did not happen: the socket never opens. */
  fail(): void {
    if (this.#state === WebSocket.CLOSED) return;
    this.#state = WebSocket.CLOSED;
    this.onclose?.({ code: 1006, reason: "" });
  }
}

function bytesOf(data: ArrayBufferLike | ArrayBufferView): Uint8Array {
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  return new Uint8Array(data);
}

/** Headers that belong to one hop (the connection they came on), never relayed. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "host",
  "upgrade",
  "sec-websocket-key",
  "sec-websocket-accept",
  "sec-websocket-extensions",
]);

function headerList(headers: Headers, keep: string[] = []): [string, string][] {
  const out: [string, string][] = [];
  headers.forEach((v, k) => {
    if (!HOP_BY_HOP.has(k) || keep.includes(k)) out.push([k, v]);
  });
  return out.slice(0, 128);
}

function headersOf(list: [string, string][]): Headers {
  const h = new Headers();
  for (const [k, v] of list) {
    try {
      h.append(k, v);
    } catch { /* a header the fetch API cannot hold is dropped */ }
  }
  return h;
}

/** Copies a web stream into a tunnel stream, then ends it; resets it if the source fails. */
async function pump(body: ReadableStream<Uint8Array> | null, stream: TunnelStream): Promise<void> {
  if (!body) {
    stream.end();
    return;
  }
  const reader = body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      await stream.write(value);
    }
    stream.end();
  } catch {
    stream.reset("The body failed");
    reader.cancel().catch(() => {});
  }
}

/** Copies a tunnel stream into a web writable (a raw upgrade's client side). */
async function drain(stream: TunnelStream, writable: WritableStream<Uint8Array>): Promise<void> {
  await stream.readable.pipeTo(writable).catch(() => stream.reset("The connection closed"));
}

export interface ServeOptions {
  fetch: (req: Request, env: ConnectionEnv) => Response | Promise<Response>;
  caller: Caller;
  log: (msg: string) => void;
}

/** Serves one stream the hub opened with the app (the agent's side). */
export async function serveStream(
  stream: TunnelStream,
  head: TunnelRequest,
  opts: ServeOptions,
): Promise<void> {
  let socket: TunnelWebSocket | undefined;
  let raw: { resolve: (s: RawStream) => void } | undefined;
  const refuse = () => {
    throw new TypeError("Not a websocket upgrade request");
  };
  const connection: Connection = {
    caller: opts.caller,
    upgradeWebSocket: () => {
      if (socket || raw) refuse();
      socket = new TunnelWebSocket(stream);
      return {
        socket: socket as unknown as WebSocket,
        response: new Response(null, { status: 101 }),
      };
    },
    upgradeRaw: () => {
      if (socket || raw) refuse();
      const { promise, resolve } = Promise.withResolvers<RawStream>();
      raw = { resolve };
      return { response: new Response(null, { status: 101 }), stream: promise };
    },
  };
  try {
    const hasBody = head.method !== "GET" && head.method !== "HEAD";
    const request = new Request(new URL(`https://localhost${head.path}`), {
      method: head.method,
      headers: headersOf(head.headers),
      body: hasBody ? stream.readable : undefined,
      duplex: "half",
    } as RequestInit);
    const resp = await opts.fetch(request, { connection });
    if (resp.status === 101 && socket) {
      stream.respond({ status: 101, headers: [] });
      socket.open();
    } else if (resp.status === 101 && raw) {
      stream.respond({ status: 101, headers: [] });
      raw.resolve({
        readable: stream.readable,
        writable: new WritableStream<Uint8Array>({
          write: (chunk) => stream.write(chunk),
          close: () => stream.end(),
          abort: () => stream.reset("The connection closed"),
        }),
      });
    } else {
      socket?.fail();
      stream.respond({ status: resp.status, headers: headerList(resp.headers) });
      if (!hasBody) stream.readable.cancel().catch(() => {});
      await pump(resp.body, stream);
    }
  } catch (err) {
    opts.log(`tunnel: ${err instanceof Error ? err.message : String(err)}`);
    socket?.fail();
    stream.reset("The request failed");
  }
}

function errorResponse(status: number, message: string): Response {
  return new Response(JSON.stringify(errorBody(message, status)), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/** A close code a websocket may send (1005, 1006 and 1015 are only ever reported). */
function sendableCode(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
}

/** Relays websocket messages between a client's socket and a tunnel stream, both ways. */
function relayWebSocket(client: WebSocket, stream: TunnelStream): void {
  client.binaryType = "arraybuffer";
  const early: (string | Uint8Array)[] = [];
  const toClient: StreamWebSocketHandler = {
    message: (data) => {
      if (client.readyState === WebSocket.OPEN) client.send(data);
      else if (client.readyState === WebSocket.CONNECTING) early.push(data);
    },
    close: (code, reason) => client.close(sendableCode(code), reason),
  };
  client.onopen = () => {
    for (const m of early.splice(0)) client.send(m);
    stream.onWebSocket(toClient);
  };
  client.onmessage = (e) => {
    const data = e.data;
    stream.sendWebSocket(typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer));
  };
  client.onclose = (e) => stream.closeWebSocket(sendableCode(e.code), e.reason);
  client.onerror = () => stream.reset("The client's websocket failed");
}

/**
 * Sends a client's request down a new stream to `path` on the agent and answers with the agent's
 * answer: a websocket or raw upgrade is taken over on the client's connection too.
 */
export async function relayRequest(
  tunnel: Tunnel,
  req: Request,
  path: string,
  connection: Connection,
): Promise<Response> {
  const upgrade = req.headers.get("upgrade")?.toLowerCase();
  const keep = upgrade ? ["upgrade", "connection", "sec-websocket-key"] : [];
  let stream: TunnelStream;
  try {
    stream = tunnel.open({ method: req.method, path, headers: headerList(req.headers, keep) });
  } catch (err) {
    return errorResponse(503, err instanceof Error ? err.message : String(err));
  }
  // An upgrade's stream stays open both ways: after a 101 it carries the connection's bytes.
  if (!upgrade) void pump(req.method === "GET" || req.method === "HEAD" ? null : req.body, stream);
  let head;
  try {
    head = await stream.response;
  } catch (err) {
    return errorResponse(502, `The host's tunnel failed: ${(err as Error).message}`);
  }
  if (head.status === 101 && upgrade === "websocket") {
    const { socket, response } = connection.upgradeWebSocket(req);
    relayWebSocket(socket, stream);
    return response;
  }
  if (head.status === 101) {
    if (!connection.upgradeRaw || !upgrade) {
      stream.reset("Cannot upgrade this connection");
      return errorResponse(501, "This connection cannot be upgraded");
    }
    const { response, stream: rawClient } = connection.upgradeRaw(req, upgrade);
    void rawClient.then((client) => {
      void pump(client.readable, stream);
      void drain(stream, client.writable);
    });
    return response;
  }
  if (upgrade) stream.end(); // refused: the request had no body
  const empty = req.method === "HEAD" || head.status === 204 || head.status === 304;
  if (empty) stream.readable.cancel().catch(() => {});
  return new Response(empty ? null : stream.readable, {
    status: head.status,
    headers: headersOf(head.headers.filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()))),
  });
}
