/** A small Incus API client over the daemon's unix socket (used by the CLI and tests). */

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export interface Envelope<T = unknown> {
  type: "sync" | "async" | "error";
  status_code: number;
  error_code?: number;
  error?: string;
  operation?: string;
  metadata: T;
}

export interface Operation {
  id: string;
  status: string;
  status_code: number;
  err: string;
  metadata: Record<string, unknown> | null;
}

export interface RequestOptions {
  body?: unknown;
  /** A raw body (uploads); sent as application/octet-stream. */
  raw?: BodyInit;
  headers?: Record<string, string>;
}

export class ApiClient {
  #http: Deno.HttpClient;

  constructor(readonly socket: string) {
    this.#http = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  }

  close(): void {
    this.#http.close();
  }

  /** The raw response of a request (for logs and file downloads). */
  async fetch(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: BodyInit | undefined;
    if (opts.raw !== undefined) {
      body = opts.raw;
      headers["Content-Type"] ??= "application/octet-stream";
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["Content-Type"] = "application/json";
    }
    try {
      return await fetch(`http://outpost${path}`, { method, headers, body, client: this.#http });
    } catch (err) {
      // fetch() says "fetch failed"; what happened is in its cause.
      const cause = err instanceof Error && err.cause instanceof Error
        ? `: ${err.cause.message}`
        : "";
      const why = `${err instanceof Error ? err.message : String(err)}${cause}`;
      if (/No such file|ENOENT|Connection refused|os error 2|os error 111/.test(why)) {
        throw new ApiError(
          `Cannot reach the outpost daemon at ${this.socket}: is it running? (start it with "outpost daemon")`,
          0,
        );
      }
      throw new ApiError(`Request to the daemon failed: ${why}`, 0);
    }
  }

  async request<T = unknown>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<Envelope<T>> {
    const res = await this.fetch(method, path, opts);
    const text = await res.text();
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
      throw new ApiError(env.error || `Request failed with HTTP ${res.status}`, res.status);
    }
    return env;
  }

  async get<T = unknown>(path: string): Promise<T> {
    return (await this.request<T>("GET", path)).metadata;
  }

  /** Sends a request; if it returns an operation, waits for it and throws on failure. */
  async run(method: string, path: string, opts: RequestOptions = {}): Promise<Operation | unknown> {
    const env = await this.request(method, path, opts);
    if (env.type !== "async") return env.metadata;
    return await this.wait((env.metadata as Operation).id);
  }

  async wait(id: string): Promise<Operation> {
    const op =
      (await this.request<Operation>("GET", `/1.0/operations/${id}/wait?timeout=-1`)).metadata;
    if (op.status_code !== 200) throw new ApiError(op.err || `Operation ${op.status}`, 400);
    return op;
  }
}
