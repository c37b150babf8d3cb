/**
 * An HTTPS remote as a transport: TLS 1.3 through `node:tls`, presenting the client certificate
 * and trusting exactly the server certificate pinned when the remote was added. The server's
 * names rarely include the address a remote is reached at (its certificate names the host,
 * 127.0.0.1 and ::1), so the host name is not checked: the chain must end at the pinned
 * certificate, and the peer's fingerprint must be the pinned one. Loaded only for remotes.
 */
import { Buffer } from "node:buffer";
import { createHash, X509Certificate } from "node:crypto";
import https from "node:https";
import { Readable } from "node:stream";
import tls from "node:tls";
import { type ByteConn, type Transport, TransportError } from "./transport.ts";

/** How long connecting (TCP and the TLS handshake) may take. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Reading from the socket pauses while this much received data waits for the reader. */
const READ_HIGH_WATER = 4 * 2 ** 20;

export interface TlsRemote {
  /** The remote's name, for messages. */
  name: string;
  /** `https://HOST:PORT`. */
  url: string;
  /** The client certificate and key (PEM). */
  cert: string;
  key: string;
  /** The pinned server certificate (PEM). */
  serverCert: string;
}

/** Lowercase hex sha256 of a certificate's DER. */
export function fingerprintOfDer(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

/** A DER certificate as PEM. */
export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${b64.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/** The first DNS name of a certificate's subjectAltName (what clients send as the server name). */
export function firstDnsName(pem: string): string | undefined {
  const san = new X509Certificate(pem).subjectAltName ?? "";
  return /(?:^|,\s*)DNS:([^,\s]+)/.exec(san)?.[1];
}

/** Host and port of `https://HOST:PORT` (8443 when no port is given), IPv6 without brackets. */
export function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(u.port || 8443) };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A node TLS socket as the `ByteConn` the client and the websocket read and write. */
class SocketConn implements ByteConn {
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error?: Error;
  #wake?: () => void;

  constructor(private sock: tls.TLSSocket) {
    const wake = () => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    sock.on("data", (d: Buffer) => {
      this.#chunks.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      this.#queued += d.byteLength;
      if (this.#queued > READ_HIGH_WATER) sock.pause();
      wake();
    });
    sock.on("end", () => {
      this.#ended = true;
      wake();
    });
    sock.on("close", () => {
      this.#ended = true;
      wake();
    });
    sock.on("error", (err: Error) => {
      this.#error = err;
      wake();
    });
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    const chunk = this.#chunks[0];
    const n = Math.min(chunk.length, p.length);
    p.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#chunks[0] = chunk.subarray(n);
    else this.#chunks.shift();
    this.#queued -= n;
    if (this.#queued <= READ_HIGH_WATER / 2 && this.sock.isPaused()) this.sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.#error) return reject(this.#error);
      this.sock.write(Buffer.from(p), (err) => err ? reject(err) : resolve(p.length));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Connects with TLS 1.3 and `options`; an error, or no handshake within 10 s, rejects. */
function connect(
  url: string,
  options: tls.ConnectionOptions,
): Promise<tls.TLSSocket> {
  const { host, port } = hostPort(url);
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, minVersion: "TLSv1.3", ...options });
    const timer = setTimeout(
      () => sock.destroy(new Error(`no answer in ${CONNECT_TIMEOUT_MS / 1000}s`)),
      CONNECT_TIMEOUT_MS,
    );
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      sock.removeAllListeners("error");
      // Small writes go out at once: with Nagle, a websocket frame written after another waits
      // for the peer's delayed ACK (40 ms a message through a hub's tunnel).
      sock.setNoDelay(true);
      resolve(sock);
    });
  });
}

/** The certificate a server at `url` presents (not yet trusted): PEM and fingerprint. */
export async function probeServerCert(
  url: string,
): Promise<{ certificate: string; fingerprint: string }> {
  let sock: tls.TLSSocket;
  try {
    sock = await connect(url, { rejectUnauthorized: false });
  } catch (err) {
    throw new TransportError(`Cannot reach ${url}: ${messageOf(err)}`);
  }
  try {
    const der = new Uint8Array(sock.getPeerCertificate().raw);
    return { certificate: derToPem(der), fingerprint: fingerprintOfDer(der) };
  } finally {
    sock.destroy();
  }
}

export class TlsTransport implements Transport {
  readonly host: string;
  readonly #options: tls.ConnectionOptions;
  readonly #pinned: string;

  constructor(readonly remote: TlsRemote) {
    this.host = new URL(remote.url).host;
    this.#pinned = fingerprintOfDer(new X509Certificate(remote.serverCert).raw);
    this.#options = {
      servername: firstDnsName(remote.serverCert),
      ca: remote.serverCert,
      cert: remote.cert,
      key: remote.key,
      checkServerIdentity: () => undefined,
    };
  }

  #fail(err: unknown): TransportError {
    const code = (err as { code?: string }).code ?? "";
    if (/CERT|SIGNATURE|ISSUER/.test(code)) {
      return new TransportError(
        `Remote "${this.remote.name}" at ${this.remote.url} presented a certificate other than the one pinned when it was added (${code})`,
      );
    }
    return new TransportError(
      `Cannot reach remote "${this.remote.name}" at ${this.remote.url}: ${messageOf(err)}`,
    );
  }

  /** Whether the peer is the pinned server (the chain check alone would accept a cert it signed). */
  #checkPeer(sock: tls.TLSSocket): void {
    const raw = sock.getPeerCertificate().raw;
    if (!raw || fingerprintOfDer(new Uint8Array(raw)) !== this.#pinned) {
      sock.destroy();
      throw new TransportError(
        `Remote "${this.remote.name}" at ${this.remote.url} presented a certificate other than the one pinned when it was added`,
      );
    }
  }

  async dial(): Promise<ByteConn> {
    let sock: tls.TLSSocket;
    try {
      sock = await connect(this.remote.url, this.#options);
    } catch (err) {
      throw this.#fail(err);
    }
    this.#checkPeer(sock);
    return new SocketConn(sock);
  }

  fetch(
    method: string,
    path: string,
    init: { headers: Headers; body?: BodyInit },
  ): Promise<Response> {
    const { host, port } = hostPort(this.remote.url);
    return new Promise((resolve, reject) => {
      const req = https.request({
        host,
        port,
        method,
        path,
        headers: Object.fromEntries(init.headers),
        agent: false,
        minVersion: "TLSv1.3",
        ...this.#options,
      });
      req.once("error", (err) => reject(err instanceof TransportError ? err : this.#fail(err)));
      req.once("response", (res) => {
        try {
          this.#checkPeer(res.socket as tls.TLSSocket);
        } catch (err) {
          return reject(err);
        }
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          for (const one of Array.isArray(v) ? v : [v ?? ""]) headers.append(k, one);
        }
        const empty = method === "HEAD" || res.statusCode === 204 || res.statusCode === 304;
        const body = empty ? null : Readable.toWeb(res) as ReadableStream<Uint8Array>;
        if (empty) res.resume();
        resolve(new Response(body, { status: res.statusCode, headers }));
      });
      sendBody(req, init.body).catch((err) => req.destroy(err));
    });
  }

  close(): void {}
}

/** Writes a request body (all at once when its length is known, else streamed) and ends it. */
async function sendBody(req: import("node:http").ClientRequest, body?: BodyInit): Promise<void> {
  if (body === undefined || body === null) return void req.end();
  if (typeof body === "string" || body instanceof Uint8Array) {
    const bytes = typeof body === "string" ? Buffer.from(body) : Buffer.from(body);
    req.setHeader("Content-Length", String(bytes.length));
    return void req.end(bytes);
  }
  const stream = new Response(body).body;
  if (stream) {
    for await (const chunk of stream) {
      if (!req.write(Buffer.from(chunk))) {
        await new Promise((r) => req.once("drain", r));
      }
    }
  }
  req.end();
}
