/**
 * A small Incus API client over a transport (transport.ts): the daemon's unix socket, or an HTTPS
 * remote (used by the CLI and tests). Answers are typed by responses.ts, imported as types only:
 * the client never loads zod.
 */
import { concatBytes } from "./bytes.ts";
import type { AsyncEnvelope, Envelope, Operation, SyncEnvelope } from "./responses.ts";
import { type ByteConn, type Transport, TransportError, UnixTransport } from "./transport.ts";
import { operationUrl } from "./urls.ts";

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export interface RequestOptions {
  body?: unknown;
  /** A raw body (uploads); sent as application/octet-stream. */
  raw?: BodyInit;
  headers?: Record<string, string>;
}

/** The most a JSON answer may hold (the daemon's largest lists are far below it). */
const MAX_ANSWER = 256 * 2 ** 20;

/** An HTTP/1.1 body sent as `Transfer-Encoding: chunked`, decoded. */
export function dechunk(body: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    let eol = at;
    while (eol + 1 < body.length && !(body[eol] === 13 && body[eol + 1] === 10)) eol++;
    if (eol + 1 >= body.length) throw new Error("Truncated chunked body");
    const size = parseInt(new TextDecoder().decode(body.subarray(at, eol)).split(";")[0], 16);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error("Malformed chunk size");
    if (size === 0) break;
    const start = eol + 2;
    if (start + size > body.length) throw new Error("Truncated chunked body");
    parts.push(body.subarray(start, start + size));
    at = start + size + 2;
  }
  return concatBytes(parts);
}

/** A transport's own error as an ApiError; any other as a failed request. */
function apiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof TransportError) return new ApiError(err.message, 0);
  return new ApiError(
    `Request to the daemon failed: ${err instanceof Error ? err.message : String(err)}`,
    0,
  );
}

export interface ClientOptions {
  /** What to add to a 403's message, if anything (a remote says how to be trusted again). */
  forbiddenHint?: (message: string) => string | undefined;
  /**
   * Put before every path, websockets included: a host's API through a hub is the hub's
   * `/fleet/v1/hosts/HOST` followed by the host's own paths.
   */
  basePath?: string;
}

export class ApiClient {
  readonly transport: Transport;

  /** What every path is put after (empty: the daemon's own paths). */
  readonly basePath: string;

  /** A client of the daemon at a unix socket path, or over a transport. */
  constructor(target: string | Transport, readonly options: ClientOptions = {}) {
    this.transport = typeof target === "string" ? new UnixTransport(target) : target;
    this.basePath = options.basePath ?? "";
  }

  close(): void {
    this.transport.close();
  }

  /** A fresh connection to the daemon, for a websocket. */
  async dial(): Promise<ByteConn> {
    try {
      return await this.transport.dial();
    } catch (err) {
      throw apiError(err);
    }
  }

  /**
   * One HTTP/1.1 exchange on a fresh connection, for the JSON requests that make up most
   * commands: far cheaper to set up than fetch()'s client, which only streams need.
   */
  async #exchange(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: Uint8Array,
  ): Promise<{ status: number; text: string }> {
    path = this.basePath + path;
    // deno-lint-ignore no-control-regex
    if (/[\u0000-\u0020\u007f]/.test(path)) {
      throw new ApiError(`Invalid request path ${JSON.stringify(path)}`, 0);
    }
    const conn = await this.dial();
    try {
      const head = [
        `${method} ${path} HTTP/1.1`,
        `Host: ${this.transport.host}`,
        "Connection: close",
        `Content-Length: ${body?.length ?? 0}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        "",
        "",
      ].join("\r\n");
      const request = new TextEncoder().encode(head);
      for (const part of body ? [request, body] : [request]) {
        for (let off = 0; off < part.length;) off += await conn.write(part.subarray(off));
      }
      let buf = new Uint8Array(64 * 1024);
      let n = 0;
      for (;;) {
        if (n === buf.length) {
          if (buf.length >= MAX_ANSWER) throw new Error("The daemon's answer is too large");
          const bigger = new Uint8Array(buf.length * 2);
          bigger.set(buf);
          buf = bigger;
        }
        const got = await conn.read(buf.subarray(n));
        if (got === null) break;
        n += got;
      }
      const raw = buf.subarray(0, n);
      let end = 0;
      while (
        end + 3 < raw.length &&
        !(raw[end] === 13 && raw[end + 1] === 10 && raw[end + 2] === 13 && raw[end + 3] === 10)
      ) end++;
      if (end + 3 >= raw.length) throw new Error("The daemon closed the connection mid-answer");
      const lines = new TextDecoder().decode(raw.subarray(0, end)).split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1]);
      if (!Number.isInteger(status)) throw new Error(`Unexpected answer: ${lines[0].slice(0, 80)}`);
      const chunked = lines.some((l) => /^transfer-encoding:\s*chunked\s*$/i.test(l));
      const payload = raw.subarray(end + 4);
      return {
        status,
        text: new TextDecoder().decode(chunked ? dechunk(payload) : payload),
      };
    } catch (err) {
      throw apiError(err);
    } finally {
      conn.close();
    }
  }

  /** The raw response of a request (for logs and file downloads). */
  async fetch(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers = new Headers(opts.headers);
    let body: BodyInit | undefined;
    if (opts.raw !== undefined) {
      body = opts.raw;
      if (!headers.has("Content-Type")) headers.set("Content-Type", "application/octet-stream");
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers.set("Content-Type", "application/json");
    }
    try {
      return await this.transport.fetch(method, this.basePath + path, { headers, body });
    } catch (err) {
      throw apiError(err);
    }
  }

  /** Sends a request and returns its envelope; an error envelope (or HTTP status) throws. */
  async request<T = unknown>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<SyncEnvelope<T> | AsyncEnvelope> {
    let res: { status: number; text: string };
    if (opts.raw !== undefined) {
      const answer = await this.fetch(method, path, opts);
      res = { status: answer.status, text: await answer.text() };
    } else {
      const headers: Record<string, string> = { ...opts.headers };
      let body: Uint8Array | undefined;
      if (opts.body !== undefined) {
        body = new TextEncoder().encode(JSON.stringify(opts.body));
        headers["Content-Type"] = "application/json";
      }
      res = await this.#exchange(method, path, headers, body);
    }
    const text = res.text;
    let env: Envelope<T>;
    try {
      env = JSON.parse(text);
    } catch {
      throw new ApiError(
        `The daemon answered ${res.status} with a body that is not JSON`,
        res.status,
      );
    }
    if (env.type === "error" || res.status >= 400) {
      const message = env.error || `Request failed with HTTP ${res.status}`;
      const hint = res.status === 403 ? this.options.forbiddenHint?.(message) : undefined;
      throw new ApiError(hint ? `${message}: ${hint}` : message, res.status);
    }
    return env;
  }

  /** The metadata of a sync answer to a GET. */
  async get<T = unknown>(path: string): Promise<T> {
    const env = await this.request<T>("GET", path);
    if (env.type !== "sync") throw new ApiError(`GET ${path} answered an operation`, 0);
    return env.metadata;
  }

  /** Sends a request that must start an operation, and returns the operation without waiting. */
  async start(method: string, path: string, opts: RequestOptions = {}): Promise<Operation> {
    const env = await this.request(method, path, opts);
    if (env.type !== "async") throw new ApiError(`${method} ${path} started no operation`, 0);
    return env.metadata;
  }

  /** Sends a request; if it returns an operation, waits for it and throws on failure. */
  async run(method: string, path: string, opts: RequestOptions = {}): Promise<Operation | unknown> {
    const env = await this.request(method, path, opts);
    if (env.type !== "async") return env.metadata;
    return await this.wait(env.metadata.id);
  }

  async wait(id: string): Promise<Operation> {
    const op = await this.get<Operation>(`${operationUrl(id)}/wait?timeout=-1`);
    if (op.status_code !== 200) throw new ApiError(op.err || `Operation ${op.status}`, 400);
    return op;
  }
}
