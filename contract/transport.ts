/**
 * How the API client reaches a daemon: a `Transport` dials byte connections (for the plain JSON
 * exchanges and the websockets) and makes streaming HTTP requests (uploads, downloads). The
 * daemon's unix socket is one; an HTTPS remote (tls_transport.ts, loaded only for remotes) is the
 * other. Each says in its own words what it could not reach.
 */
import type { ByteConn } from "./websocket.ts";

export type { ByteConn };

export interface Transport {
  /** The `Host` header its requests carry. */
  readonly host: string;
  /** A fresh connection to the daemon (an error names what could not be reached). */
  dial(): Promise<ByteConn>;
  /** One streaming HTTP request. */
  fetch(
    method: string,
    path: string,
    init: { headers: Headers; body?: BodyInit },
  ): Promise<Response>;
  close(): void;
}

/** A transport error the client passes on as it is (its message is the whole story). */
export class TransportError extends Error {}

/** The message of an error, with its cause (fetch() says "fetch failed" and why in its cause). */
export function describeError(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
  return `${err instanceof Error ? err.message : String(err)}${cause}`;
}

/** A socket error that means "no daemon there". */
function unreachable(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused ||
    /No such file|ENOENT|Connection refused|os error 2|os error 111/.test(describeError(err));
}

/** The local daemon's unix socket. */
export class UnixTransport implements Transport {
  readonly host = "outpost";
  #http?: Deno.HttpClient;

  constructor(readonly socket: string) {}

  #fail(err: unknown): never {
    if (unreachable(err)) {
      throw new TransportError(
        `Cannot reach the outpost daemon at ${this.socket}: is it running? (start it with "outpost daemon")`,
      );
    }
    throw new TransportError(`Request to the daemon failed: ${describeError(err)}`);
  }

  async dial(): Promise<ByteConn> {
    try {
      return await Deno.connect({ transport: "unix", path: this.socket });
    } catch (err) {
      this.#fail(err);
    }
  }

  async fetch(
    method: string,
    path: string,
    init: { headers: Headers; body?: BodyInit },
  ): Promise<Response> {
    this.#http ??= Deno.createHttpClient({ proxy: { transport: "unix", path: this.socket } });
    try {
      return await fetch(`http://outpost${path}`, { method, ...init, client: this.#http });
    } catch (err) {
      this.#fail(err);
    }
  }

  close(): void {
    this.#http?.close();
  }
}

/** A transport made on first use: the TLS code and the remote's files load only when needed. */
export class LazyTransport implements Transport {
  #loaded?: Transport;
  #loading?: Promise<Transport>;

  constructor(readonly host: string, private load: () => Promise<Transport>) {}

  #get(): Promise<Transport> {
    this.#loading ??= this.load().then((t) => this.#loaded = t);
    return this.#loading;
  }

  async dial(): Promise<ByteConn> {
    return await (await this.#get()).dial();
  }

  async fetch(
    method: string,
    path: string,
    init: { headers: Headers; body?: BodyInit },
  ): Promise<Response> {
    return await (await this.#get()).fetch(method, path, init);
  }

  close(): void {
    this.#loaded?.close();
  }
}
