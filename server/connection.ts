/**
 * What a listener tells the app about the connection a request came on: who is calling (the unix
 * socket, or a TLS peer with the certificate it presented) and how to take the connection over
 * (a websocket, or a raw stream after `101 Switching Protocols`). Listeners pass it as Hono's
 * `env` (`app.fetch(req, { connection })`); routes never ask the runtime directly, so one exec or
 * SFTP session runs alike over the unix socket and HTTPS.
 */
import type { Context } from "hono";

/** Who sent a request. */
export type Caller =
  /** The unix socket: its file mode is the check, a caller there is trusted as a whole. */
  | { via: "unix" }
  /** The HTTPS listener: the peer's address and the DER of the certificate it presented. */
  | { via: "https"; address: string; certificate?: Uint8Array }
  /** The hub this host is enrolled with, through the tunnel the host dialed: trusted as a whole. */
  | { via: "hub"; hub: string };

/** Both ends of a connection taken over after a 101 (SFTP). */
export interface RawStream {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

export interface Connection {
  caller: Caller;
  /** Upgrades the request to a websocket. */
  upgradeWebSocket(req: Request): { socket: WebSocket; response: Response };
  /**
   * Answers `101 Switching Protocols` to `protocol` and hands over the raw connection, once the
   * answer has gone out; undefined where the listener cannot (the connection stays HTTP).
   */
  upgradeRaw?(req: Request, protocol: string): { response: Response; stream: Promise<RawStream> };
}

/** Hono's `env` as the listeners fill it. */
export interface ConnectionEnv {
  connection: Connection;
}

/** The unix socket's connection as Deno's own server serves it. */
export const UNIX_CONNECTION: Connection = {
  caller: { via: "unix" },
  upgradeWebSocket: (req) => Deno.upgradeWebSocket(req, { idleTimeout: 0 }),
};

/**
 * The connection a request came on. A request with no `env` is one a test hands the app
 * (`app.request()`): it stands for the unix socket.
 */
export function connectionOf(c: Context): Connection {
  const env = c.env as Partial<ConnectionEnv> | undefined;
  return env?.connection ?? UNIX_CONNECTION;
}
