/**
 * The HTTPS listener `core.https_address` asks for: started, moved or stopped live. TLS 1.3 only
 * (what the Incus and LXD clients require), with the server certificate from the state dir; the
 * client is asked for its certificate but not refused without one: trust is the app's decision
 * (`api/access.ts`), made per request against the trust store.
 */
import type { Server } from "node:https";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Caller } from "./connection.ts";
import { BadRequest, messageOf } from "../contract/errors.ts";
import {
  formatListenAddress,
  type ListenAddress,
  parseListenAddress,
} from "../contract/listen_address.ts";
import { type BridgeOptions, serveApp, SERVER_OPTIONS } from "./node_bridge.ts";
import { closeOnExec } from "./cloexec.ts";

/** Connections the listener holds at once; more wait in the kernel's backlog. */
export const MAX_CONNECTIONS = 1000;
/** A client has this long to finish the TLS handshake. */
const HANDSHAKE_MS = 10_000;

export interface HttpsListenerOptions {
  /** The server's certificate and key (PEM). */
  credentials: () => Promise<{ cert: string; key: string }>;
  fetch: BridgeOptions["fetch"];
  log: (msg: string) => void;
}

/** The caller at the other end of a TLS socket, with the certificate it presented, if any. */
function tlsCaller(socket: Socket): Caller {
  const tls = socket as TLSSocket;
  const address = socket.remoteAddress ?? "";
  let raw: Uint8Array | undefined;
  try {
    raw = tls.getPeerCertificate?.(false)?.raw;
  } catch { /* no certificate */ }
  return raw && raw.length > 0
    ? { via: "https", address, certificate: new Uint8Array(raw) }
    : { via: "https", address };
}

export class HttpsListener {
  #server?: Server;
  #address?: ListenAddress;
  #sockets = new Set<Socket>();

  constructor(private opts: HttpsListenerOptions) {}

  /** The address listened on (`[::]:8443`), or undefined when stopped. */
  get address(): string | undefined {
    return this.#address && formatListenAddress(this.#address);
  }

  /** The port actually bound (useful when asked for port 0 in tests). */
  get port(): number | undefined {
    const a = this.#server?.address();
    return a && typeof a === "object" ? a.port : undefined;
  }

  /**
   * Listens where `value` says (empty: nowhere). A change closes the old listener and its
   * connections; if the new address cannot be bound, the old one is restored and a BadRequest
   * says why.
   */
  async apply(value: string): Promise<void> {
    const next = value === "" ? undefined : parseListenAddress(value);
    const same = next && this.#address && next.host === this.#address.host &&
      next.port === this.#address.port;
    if (same || (!next && !this.#address)) return;
    const old = this.#address;
    await this.close();
    if (!next) return;
    try {
      await this.#listen(next);
    } catch (err) {
      if (old) await this.#listen(old).catch(() => {});
      throw new BadRequest(
        `Cannot listen on ${formatListenAddress(next)}: ${messageOf(err)}`,
      );
    }
  }

  async #listen(at: ListenAddress): Promise<void> {
    const { cert, key } = await this.opts.credentials();
    // Loaded with the first listener: a daemon without HTTPS never holds node's TLS in memory.
    const { createServer } = await import("node:https");
    const server = createServer({
      ...SERVER_OPTIONS,
      cert,
      key,
      minVersion: "TLSv1.3",
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: HANDSHAKE_MS,
    });
    server.maxConnections = MAX_CONNECTIONS;
    server.on("secureConnection", (socket: Socket) => {
      // Answers go out at once: with Nagle, a body written after its head waits for the
      // client's delayed ACK (40 ms a request).
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    server.on("tlsClientError", () => {});
    serveApp(server, { fetch: this.opts.fetch, callerOf: tlsCaller, log: this.opts.log });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: at.host, port: at.port, ipv6Only: false }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    closeOnExec();
    server.on("error", (err) => this.opts.log(`https: ${messageOf(err)}`));
    this.#server = server;
    this.#address = at;
    this.opts.log(`listening on https://${formatListenAddress(at)}`);
  }

  /** Stops listening and ends every connection. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#address = undefined;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    server.closeAllConnections?.();
    await closed;
  }
}
