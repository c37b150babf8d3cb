/**
 * A small RFC 6455 websocket client over any byte connection (`ByteConn`, which a `Deno.Conn`
 * is): the daemon's unix socket, a TLS connection to a remote (tls_transport.ts) alike. It does
 * the HTTP/1.1 upgrade, masks its frames, reassembles fragmented messages, answers pings, runs the
 * close handshake and refuses a message over a size limit. No Node compatibility layer is loaded
 * for it.
 *
 * ```ts
 * const ws = await connectUnix("/var/lib/outpost/unix.socket", "/1.0/events");
 * for await (const msg of ws) if (msg.type === "text") console.log(msg.data);
 * ```
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** The upgrade response's head may be at most this long. */
const MAX_HEAD = 16 * 1024;
/** A refused upgrade's body is read up to this long (for the server's message). */
const MAX_ERROR_BODY = 64 * 1024;
/** How long a refused upgrade's body may take to arrive. */
const ERROR_BODY_TIMEOUT_MS = 2_000;
/** The default bound on one received message. */
export const DEFAULT_MAX_MESSAGE = 64 * 2 ** 20;
/** How long `close()` waits for the server's close frame before dropping the connection. */
const CLOSE_TIMEOUT_MS = 1_000;
/** Reading stops while this many bytes of received messages wait for the consumer. */
const READ_HIGH_WATER = 4 * 2 ** 20;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** Close codes (RFC 6455 section 7.4). */
export const CLOSE_NORMAL = 1000;
const CLOSE_PROTOCOL_ERROR = 1002;
const CLOSE_NO_STATUS = 1005;
/** The connection ended without a close frame. */
export const CLOSE_ABNORMAL = 1006;
const CLOSE_INVALID_DATA = 1007;
const CLOSE_TOO_BIG = 1009;

/** What the websocket needs of a connection: a `Deno.Conn`, or an adapter around a Node socket. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** One received message. */
export type Message = { type: "text"; data: string } | { type: "binary"; data: Uint8Array };

/** How a websocket ended: the server's close code (1006 when none came) and, if it broke, why. */
export interface CloseInfo {
  code: number;
  reason: string;
  error?: WebSocketError;
}

export interface ConnectOptions {
  /** The request target, e.g. `/1.0/events?type=lifecycle`. */
  path: string;
  /** The `Host` header (default `localhost`). */
  host?: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** A received message longer than this fails the socket (default 64 MiB). */
  maxMessageSize?: number;
}

/** A websocket that failed: a broken connection, a protocol error or a message over the limit. */
export class WebSocketError extends Error {
  constructor(message: string, readonly closeCode = CLOSE_ABNORMAL) {
    super(message);
    this.name = "WebSocketError";
  }
}

/** The server did not upgrade: its status and, from an Incus error envelope, its message. */
export class HandshakeError extends WebSocketError {
  constructor(message: string, readonly status: number, readonly serverError?: string) {
    super(message);
    this.name = "HandshakeError";
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

async function writeAll(conn: ByteConn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** The value `Sec-WebSocket-Accept` must carry for `key`. */
export async function acceptFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
  return base64(new Uint8Array(digest));
}

/** One client frame: FIN set, masked with a fresh random key. */
export function encodeFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const headLen = 2 + ext + 4;
  // Padding in front puts the payload on a 4-byte boundary, so it is masked a word at a time.
  const pad = (4 - (headLen % 4)) % 4;
  const buf = new Uint8Array(pad + headLen + len);
  const frame = buf.subarray(pad);
  const view = new DataView(buf.buffer, pad);
  frame[0] = 0x80 | opcode;
  if (ext === 0) frame[1] = 0x80 | len;
  else if (ext === 2) {
    frame[1] = 0x80 | 126;
    view.setUint16(2, len);
  } else {
    frame[1] = 0x80 | 127;
    view.setBigUint64(2, BigInt(len));
  }
  const mask = crypto.getRandomValues(frame.subarray(2 + ext, headLen));
  frame.set(payload, headLen);
  const start = pad + headLen;
  const words = new Uint32Array(buf.buffer, start, len >>> 2);
  const word = new Uint32Array(mask.slice().buffer)[0];
  for (let i = 0; i < words.length; i++) words[i] ^= word;
  for (let i = words.length * 4; i < len; i++) buf[start + i] ^= mask[i & 3];
  return frame;
}

/** Exact-length reads from a connection, starting with bytes already read. */
class ByteReader {
  #buf: Uint8Array;
  #start = 0;
  #end: number;

  constructor(private conn: ByteConn, first: Uint8Array) {
    this.#buf = new Uint8Array(Math.max(64 * 1024, first.length));
    this.#buf.set(first);
    this.#end = first.length;
  }

  /** Exactly `n` bytes (a copy), or null when the stream ends before the first of them. */
  async read(n: number): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let have = Math.min(n, this.#end - this.#start);
    out.set(this.#buf.subarray(this.#start, this.#start + have));
    this.#start += have;
    while (have < n) {
      // The buffer is empty here; a large remainder is read straight into `out`.
      const into = n - have >= this.#buf.length / 2 ? out.subarray(have) : this.#buf;
      const got = await this.conn.read(into);
      if (got === null) {
        if (have === 0) return null;
        throw new WebSocketError("The connection ended in the middle of a frame");
      }
      if (into === this.#buf) {
        const take = Math.min(got, n - have);
        out.set(this.#buf.subarray(0, take), have);
        this.#start = take;
        this.#end = got;
        have += take;
      } else {
        have += got;
      }
    }
    return out;
  }
}

interface ResponseHead {
  statusLine: string;
  status: number;
  headers: Map<string, string>;
  /** Bytes read past the head: the body or the first frames. */
  rest: Uint8Array;
}

function headEnd(buf: Uint8Array, len: number, from: number): number {
  for (let i = Math.max(0, from); i + 3 < len; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

async function readHead(conn: ByteConn): Promise<ResponseHead> {
  const buf = new Uint8Array(MAX_HEAD);
  let len = 0;
  let end = -1;
  while (end < 0) {
    if (len === buf.length) {
      throw new WebSocketError(`The upgrade response's head is over ${MAX_HEAD / 1024} KiB`);
    }
    const n = await conn.read(buf.subarray(len));
    if (n === null) throw new WebSocketError("The server closed the connection during the upgrade");
    end = headEnd(buf, len + n, len - 3);
    len += n;
  }
  const [statusLine, ...lines] = new TextDecoder().decode(buf.subarray(0, end)).split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) throw new WebSocketError(`The server's answer is not HTTP: "${statusLine}"`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { statusLine, status: Number(match[1]), headers, rest: buf.slice(end + 4, len) };
}

/**
 * The body of a refused upgrade, read within bounds of size and time: `Content-Length` bytes,
 * else up to the end of the connection (a chunked body is not decoded: its JSON will not parse).
 */
async function readErrorBody(conn: ByteConn, head: ResponseHead): Promise<string> {
  const length = Number(head.headers.get("content-length") ?? NaN);
  const want = Number.isFinite(length) ? Math.min(length, MAX_ERROR_BODY) : MAX_ERROR_BODY;
  let body = head.rest;
  const timer = setTimeout(() => conn.close(), ERROR_BODY_TIMEOUT_MS);
  try {
    const buf = new Uint8Array(16 * 1024);
    while (body.length < want) {
      const n = await conn.read(buf);
      if (n === null) break;
      const more = new Uint8Array(body.length + n);
      more.set(body);
      more.set(buf.subarray(0, n), body.length);
      body = more;
    }
  } catch {
    // Timed out or the connection broke: use what came.
  } finally {
    clearTimeout(timer);
  }
  return new TextDecoder().decode(body.subarray(0, want));
}

/** The error for an upgrade answered with another status than 101. */
async function refusal(conn: ByteConn, head: ResponseHead, path: string): Promise<HandshakeError> {
  const body = await readErrorBody(conn, head);
  let serverError: string | undefined;
  try {
    const env = JSON.parse(body);
    if (typeof env?.error === "string" && env.error) serverError = env.error;
  } catch { /* not the error envelope */ }
  const status = head.statusLine.replace(/^HTTP\/1\.[01] /, "");
  const why = serverError ? `${status}: ${serverError}` : status;
  return new HandshakeError(
    `Websocket ${path.split("?")[0]} refused (${why})`.replace(/[\r\n]+/g, " "),
    head.status,
    serverError,
  );
}

/** Checks the 101 answer's headers against the key that was sent. */
async function checkAccept(head: ResponseHead, key: string, path: string): Promise<void> {
  const where = `Websocket ${path.split("?")[0]}`;
  const tokens = (name: string) =>
    (head.headers.get(name) ?? "").split(",").map((t) => t.trim().toLowerCase());
  if (!tokens("upgrade").includes("websocket") || !tokens("connection").includes("upgrade")) {
    throw new HandshakeError(`${where}: the server's 101 answer is not a websocket upgrade`, 101);
  }
  if (head.headers.get("sec-websocket-accept") !== await acceptFor(key)) {
    throw new HandshakeError(`${where}: the server sent a wrong Sec-WebSocket-Accept`, 101);
  }
  if (head.headers.has("sec-websocket-extensions")) {
    throw new HandshakeError(`${where}: the server chose an extension that was not offered`, 101);
  }
}

/**
 * An open websocket. Messages are read in the background (pings answered, a server's close
 * answered) and handed out by `receive()` or `for await`; reading pauses while 4 MiB of messages
 * wait for the consumer. Leaving a `for await` loop does not close the socket.
 */
export class WebSocketClient implements AsyncIterable<Message> {
  /** Resolves, never rejects, once the connection is closed; `error` says why if it broke. */
  readonly closed: Promise<CloseInfo>;
  #conn: ByteConn;
  #reader: ByteReader;
  #maxMessage: number;
  #state: "open" | "closing" | "closed" = "open";
  #closeCalled = false;
  #error?: WebSocketError;
  #queue: Message[] = [];
  #queuedBytes = 0;
  #waiters: (() => void)[] = [];
  #resume?: () => void;
  #writing: Promise<void> = Promise.resolve();
  #closeTimer?: ReturnType<typeof setTimeout>;

  private constructor(conn: ByteConn, first: Uint8Array, maxMessage: number) {
    this.#conn = conn;
    this.#reader = new ByteReader(conn, first);
    this.#maxMessage = maxMessage;
    this.closed = this.#readLoop();
  }

  /**
   * Upgrades a connection (or one `conn()` opens) to a websocket at `options.path`. A refusal
   * is a `HandshakeError` naming the status and the server's message; the connection is closed.
   */
  static async connect(
    conn: ByteConn | (() => Promise<ByteConn>),
    options: ConnectOptions,
  ): Promise<WebSocketClient> {
    const { path, host = "localhost", headers = {} } = options;
    const fields = [path, host, ...Object.entries(headers).flat()];
    if (fields.some((f) => /[\r\n]/.test(f)) || !path.startsWith("/") || /\s/.test(path)) {
      throw new TypeError(`Invalid websocket request: path "${path}" or a header`);
    }
    const c = typeof conn === "function" ? await conn() : conn;
    try {
      const key = base64(crypto.getRandomValues(new Uint8Array(16)));
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      await writeAll(
        c,
        encoder.encode(
          `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
        ),
      );
      const head = await readHead(c);
      if (head.status !== 101) throw await refusal(c, head, path);
      await checkAccept(head, key, path);
      return new WebSocketClient(c, head.rest, options.maxMessageSize ?? DEFAULT_MAX_MESSAGE);
    } catch (err) {
      try {
        c.close();
      } catch { /* already closed */ }
      if (err instanceof WebSocketError) throw err;
      throw new WebSocketError(`Websocket ${path.split("?")[0]} failed: ${messageOf(err)}`);
    }
  }

  /** Whether messages may still be sent (no close sent or received, the connection up). */
  get isOpen(): boolean {
    return this.#state === "open";
  }

  /**
   * Sends one text or binary message; resolves once it is written (so a sender keeps pace with
   * the connection). Rejects when the socket is closing or closed, or the write fails.
   */
  send(data: string | Uint8Array): Promise<void> {
    if (this.#state !== "open") {
      return Promise.reject(new WebSocketError("The websocket is closed"));
    }
    const text = typeof data === "string";
    return this.#write(encodeFrame(text ? OP_TEXT : OP_BINARY, text ? encoder.encode(data) : data));
  }

  /**
   * The next message, or null once the socket has closed or `close()` was called (the messages
   * received before come first). Throws the error that broke the socket, if one did.
   */
  async receive(): Promise<Message | null> {
    while (true) {
      const msg = this.#queue.shift();
      if (msg) {
        this.#queuedBytes -= msg.data.length;
        if (this.#queuedBytes <= READ_HIGH_WATER) this.#wakeReader();
        return msg;
      }
      if (this.#error) throw this.#error;
      if (this.#state === "closed" || this.#closeCalled) return null;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: async () => {
        const value = await this.receive();
        return value ? { value, done: false } : { value: undefined, done: true };
      },
    };
  }

  /**
   * Starts the close handshake (code 1000 unless given) and resolves once the connection is
   * closed: when the server answers, or after a second without an answer. Messages that arrive
   * meanwhile are dropped. Closing a closed socket just waits for `closed`.
   */
  close(code = CLOSE_NORMAL, reason = ""): Promise<CloseInfo> {
    const why = encoder.encode(reason);
    const reserved = code === 1004 || code === 1005 || code === 1006;
    if (!((code >= 1000 && code <= 1011 && !reserved) || (code >= 3000 && code <= 4999))) {
      throw new RangeError(`Invalid close code ${code}: use 1000 or 3000-4999`);
    }
    if (why.length > 123) throw new RangeError("A close reason is at most 123 bytes");
    if (this.#state === "open") {
      this.#state = "closing";
      this.#closeCalled = true;
      this.#wakeAll();
      this.#closeTimer = setTimeout(() => this.#drop(), CLOSE_TIMEOUT_MS);
      const payload = new Uint8Array(2 + why.length);
      view(payload).setUint16(0, code);
      payload.set(why, 2);
      this.#write(encodeFrame(OP_CLOSE, payload)).catch(() => this.#drop());
    }
    return this.closed;
  }

  #write(frame: Uint8Array): Promise<void> {
    const done = this.#writing.then(() => writeAll(this.#conn, frame)).catch((err) => {
      throw new WebSocketError(`Sending on the websocket failed: ${messageOf(err)}`);
    });
    this.#writing = done.catch(() => {});
    return done;
  }

  #drop(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  #wakeReader(): void {
    this.#resume?.();
    this.#resume = undefined;
  }

  #wakeAll(): void {
    this.#wakeReader();
    for (const w of this.#waiters.splice(0)) w();
  }

  async #readLoop(): Promise<CloseInfo> {
    let info: CloseInfo;
    try {
      info = await this.#readMessages();
    } catch (err) {
      const error = err instanceof WebSocketError
        ? err
        : new WebSocketError(`The websocket connection failed: ${messageOf(err)}`);
      if (this.#state !== "open") {
        // After close(), this is the connection dropped: no error of the caller's.
        info = { code: CLOSE_ABNORMAL, reason: "" };
      } else {
        this.#error = error;
        this.#state = "closing";
        this.#wakeAll();
        if (error.closeCode !== CLOSE_ABNORMAL) {
          // Tell the server why, briefly: it may not be reading any more.
          const payload = new Uint8Array(2);
          view(payload).setUint16(0, error.closeCode);
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            this.#write(encodeFrame(OP_CLOSE, payload)).catch(() => {}),
            new Promise((r) => timer = setTimeout(r, CLOSE_TIMEOUT_MS)),
          ]);
          clearTimeout(timer);
        }
        info = { code: error.closeCode, reason: "", error };
      }
    }
    clearTimeout(this.#closeTimer);
    this.#drop();
    this.#state = "closed";
    this.#wakeAll();
    return info;
  }

  async #need(n: number): Promise<Uint8Array> {
    const bytes = await this.#reader.read(n);
    if (bytes === null) throw new WebSocketError("The connection ended in the middle of a frame");
    return bytes;
  }

  /** Reads frames until a close frame (answered) or the end of the connection. */
  async #readMessages(): Promise<CloseInfo> {
    const protocol = (what: string) =>
      new WebSocketError(`Websocket protocol error: ${what}`, CLOSE_PROTOCOL_ERROR);
    let parts: Uint8Array[] = [];
    let partsLength = 0;
    let partsType = 0;
    while (true) {
      if (this.#queuedBytes > READ_HIGH_WATER && this.#state === "open") {
        await new Promise<void>((r) => this.#resume = r);
      }
      const head = await this.#reader.read(2);
      if (head === null) return { code: CLOSE_ABNORMAL, reason: "" };
      const fin = (head[0] & 0x80) !== 0;
      const opcode = head[0] & 0x0f;
      if (head[0] & 0x70) throw protocol("reserved bits set");
      if (head[1] & 0x80) throw protocol("the server masked a frame");
      let length = head[1] & 0x7f;
      if (length === 126) length = view(await this.#need(2)).getUint16(0);
      else if (length === 127) {
        const big = view(await this.#need(8)).getBigUint64(0);
        length = big > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(big);
      }

      if (opcode >= 0x8) {
        if (!fin || length > 125) throw protocol("a control frame fragmented or over 125 bytes");
        const payload = await this.#need(length);
        if (opcode === OP_PING) {
          if (this.#state === "open") this.#write(encodeFrame(OP_PONG, payload)).catch(() => {});
        } else if (opcode === OP_CLOSE) {
          return await this.#answerClose(payload);
        } else if (opcode !== OP_PONG) {
          throw protocol(`unknown opcode ${opcode}`);
        }
        continue;
      }
      if (opcode === OP_CONTINUATION) {
        if (!partsType) throw protocol("a continuation frame outside a message");
      } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
        if (partsType) throw protocol("a new message inside a fragmented one");
        partsType = opcode;
      } else {
        throw protocol(`unknown opcode ${opcode}`);
      }
      if (partsLength + length > this.#maxMessage) {
        throw new WebSocketError(
          `A websocket message is over the limit of ${this.#maxMessage} bytes`,
          CLOSE_TOO_BIG,
        );
      }
      parts.push(await this.#need(length));
      partsLength += length;
      if (!fin) continue;

      const data = parts.length === 1 ? parts[0] : concat(parts, partsLength);
      const type = partsType;
      parts = [];
      partsLength = 0;
      partsType = 0;
      if (this.#state !== "open") continue; // after close(): dropped
      let msg: Message;
      if (type === OP_TEXT) {
        try {
          msg = { type: "text", data: utf8.decode(data) };
        } catch {
          throw new WebSocketError("A websocket text message is not UTF-8", CLOSE_INVALID_DATA);
        }
      } else {
        msg = { type: "binary", data };
      }
      this.#queue.push(msg);
      this.#queuedBytes += msg.data.length;
      this.#wakeAll();
    }
  }

  /** Answers the server's close frame (unless ours went first) and reports its code. */
  async #answerClose(payload: Uint8Array): Promise<CloseInfo> {
    if (payload.length === 1) {
      throw new WebSocketError("Websocket protocol error: a 1-byte close", CLOSE_PROTOCOL_ERROR);
    }
    const code = payload.length ? view(payload).getUint16(0) : CLOSE_NO_STATUS;
    const reason = new TextDecoder().decode(payload.subarray(2));
    if (this.#state === "open") {
      this.#state = "closing";
      const echo = payload.subarray(0, Math.min(payload.length, 2));
      await this.#write(encodeFrame(OP_CLOSE, echo)).catch(() => {});
    }
    return { code, reason };
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Opens a websocket at `path` over the unix socket at `socketPath`. */
export function connectUnix(
  socketPath: string,
  path: string,
  options: Omit<ConnectOptions, "path"> = {},
): Promise<WebSocketClient> {
  return WebSocketClient.connect(
    () => Deno.connect({ transport: "unix", path: socketPath }),
    { ...options, path },
  );
}
