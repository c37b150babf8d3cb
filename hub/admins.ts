/**
 * The hub's remote administrators: client certificates it trusts, added as Incus adds them, by a
 * trust token (`outpost hub trust add NAME`, redeemed with `outpost remote add hub TOKEN`). The
 * token is the Incus format the clients already read; the hub keeps only its secret's hash.
 */
import { hashSecret, newId, newSecret } from "./secrets.ts";
import { BadRequest, Forbidden, NotFound } from "../contract/errors.ts";
import { derToPem, fingerprintOfDer } from "../contract/tls_transport.ts";
import { encodeToken, NEVER } from "../contract/trust_token.ts";
import type { ClientRecord, ClientTokenRecord, HubStore } from "./store.ts";

/** Admin tokens waiting at once; more are refused until some are used, revoked or expire. */
const MAX_PENDING = 100;

/** The secret a client sent: a whole trust token (base64 JSON) or the bare secret. */
function secretOf(sent: string): string {
  const text = sent.trim();
  if (/^[0-9a-f]{64}$/.test(text)) return text;
  try {
    const decoded = JSON.parse(atob(text.replaceAll("-", "+").replaceAll("_", "/")));
    if (typeof decoded?.secret === "string") return decoded.secret;
  } catch { /* not a token */ }
  return text;
}

export interface AdminsOptions {
  store: HubStore;
  /** The hub certificate's fingerprint, which tokens carry. */
  fingerprint: string;
  /** `https://HOST:PORT` addresses, which tokens carry as HOST:PORT. */
  urls: string[];
  durationMs: (text: string) => number | undefined;
}

export class Admins {
  constructor(private opts: AdminsOptions) {}

  /** The administrator a certificate stands for, or undefined. */
  identify(der: Uint8Array | undefined): Promise<ClientRecord | undefined> {
    if (!der) return Promise.resolve(undefined);
    return this.opts.store.clientByFingerprint(fingerprintOfDer(der));
  }

  async issue(name: string, expires: string): Promise<{ id: string; token: string }> {
    if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) {
      throw new BadRequest(
        `Invalid client name "${name.slice(0, 64)}": use letters, digits, _ . @ -`,
      );
    }
    const now = new Date();
    await this.#prune(now);
    if ((await this.opts.store.listClientTokens()).length >= MAX_PENDING) {
      throw new BadRequest(`${MAX_PENDING} trust tokens are waiting: revoke some first`);
    }
    let expiresAt = "";
    if (expires !== "" && expires !== "never") {
      const ms = this.opts.durationMs(expires);
      if (ms === undefined) throw new BadRequest(`Invalid expiry "${expires}": use 30m, 1h, 7d`);
      expiresAt = new Date(now.getTime() + ms).toISOString();
    }
    const secret = newSecret();
    const record: ClientTokenRecord = {
      id: newId(),
      hash: hashSecret(secret),
      name,
      expires_at: expiresAt,
      created_at: now.toISOString(),
    };
    await this.opts.store.putClientToken(record);
    const token = encodeToken({
      client_name: name,
      fingerprint: this.opts.fingerprint,
      addresses: this.opts.urls.map((u) => new URL(u).host),
      secret,
      expires_at: expiresAt || NEVER,
    });
    return { id: record.id, token };
  }

  /** Trusts the caller's certificate for a token's secret (single use). */
  async redeem(der: Uint8Array | undefined, sent: string): Promise<void> {
    if (!der) throw new Forbidden("Redeeming a trust token needs the client's certificate");
    const ok = await this.opts.store.redeemClientToken(
      hashSecret(secretOf(sent)),
      new Date().toISOString(),
      {
        fingerprint: fingerprintOfDer(der),
        certificate: derToPem(der),
        created_at: new Date().toISOString(),
      },
    );
    if (!ok) throw new Forbidden("The trust token is invalid, expired, revoked or used");
  }

  async list(): Promise<{ clients: ClientRecord[]; tokens: Omit<ClientTokenRecord, "hash">[] }> {
    await this.#prune(new Date());
    const tokens = (await this.opts.store.listClientTokens()).map(({ hash: _, ...t }) => t);
    return { clients: await this.opts.store.listClients(), tokens };
  }

  /** Stops trusting the client whose fingerprint starts with `prefix`, or revokes token `prefix`. */
  async remove(prefix: string): Promise<void> {
    const p = prefix.toLowerCase();
    if (p.length >= 12 || /^[0-9a-f]{12}$/.test(p)) {
      if (await this.opts.store.deleteClientToken(p)) return;
    }
    const matches = (await this.opts.store.listClients()).filter((c) =>
      c.fingerprint.startsWith(p)
    );
    if (p === "" || matches.length === 0) throw new NotFound(`No client or token "${prefix}"`);
    if (matches.length > 1) throw new BadRequest(`"${prefix}" matches ${matches.length} clients`);
    await this.opts.store.deleteClient(matches[0].fingerprint);
  }

  async #prune(now: Date): Promise<void> {
    for (const t of await this.opts.store.listClientTokens()) {
      if (t.expires_at !== "" && t.expires_at <= now.toISOString()) {
        await this.opts.store.deleteClientToken(t.id);
      }
    }
  }
}
