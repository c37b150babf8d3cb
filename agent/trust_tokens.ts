/**
 * Trust tokens, as Incus and LXD issue them: `POST /1.0/certificates {"token": true, ...}` starts
 * a running operation of class `token` whose metadata holds a secret, the server certificate's
 * fingerprint, the addresses to reach it and the request; the client prints it as a token (base64
 * JSON). A client redeems it once, over TLS, by sending the token (`password` for LXD 5.0,
 * `trust_token` for Incus 6.0): the certificate its TLS client presented is then trusted with the
 * token's name, type and restrictions. Listed as running `token` operations, revoked by
 * cancelling one; ended when `core.remote_token_expiry` runs out.
 */
import { timingSafeEqual } from "node:crypto";
import { BadRequest, Forbidden, InvalidState } from "../contract/errors.ts";
import type { Operation } from "../contract/responses.ts";
import type { CertificatesPost } from "../contract/schemas.ts";
import { addExpiry } from "../contract/units.ts";
import type { Operations } from "./operations.ts";
import type { CertificateRecord } from "./store.ts";
import type { TrustStore } from "./trust.ts";

/** Tokens waiting at once; one more is refused. */
export const MAX_TOKENS = 100;

export interface TrustTokensOptions {
  operations: Operations;
  trust: TrustStore;
  /** The server certificate's fingerprint (lowercase hex SHA-256 of the DER). */
  fingerprint: () => string;
  /** Where clients reach the HTTPS listener (`10.0.0.1:8443`); empty when it is off. */
  addresses: () => string[];
  /** `core.remote_token_expiry`, empty for none. */
  expiry: () => string;
}

interface Pending {
  id: string;
  secret: string;
  request: CertificatesPost;
  /** ms since the epoch; Infinity for none. */
  expiresAt: number;
  redeem: () => void;
}

/** The secret a redeeming client sent: a whole token (base64 JSON) or, as Incus also takes, the bare secret. */
export function tokenSecret(sent: string): string {
  const text = sent.trim();
  if (/^[0-9a-f]{64}$/.test(text)) return text;
  try {
    const decoded = JSON.parse(atob(text));
    if (typeof decoded?.secret === "string") return decoded.secret;
  } catch { /* not a token */ }
  throw new Forbidden("Invalid trust token");
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class TrustTokens {
  #pending = new Map<string, Pending>();

  constructor(private opts: TrustTokensOptions) {}

  /** Issues a token for `request` (a CertificatesPost with `token: true`): its operation. */
  issue(request: CertificatesPost): Operation {
    const addresses = this.opts.addresses();
    if (addresses.length === 0) {
      throw new BadRequest(
        "Cannot issue a trust token while the server has no HTTPS listener: set core.https_address first",
      );
    }
    if (this.#pending.size >= MAX_TOKENS) {
      throw new InvalidState(
        `Too many trust tokens waiting (${MAX_TOKENS}): revoke some (config trust list-tokens)`,
      );
    }
    const expiry = this.opts.expiry();
    const expiresAt = expiry === "" ? undefined : addExpiry(new Date(), expiry);
    const secret = randomHex(32);
    const stored: CertificatesPost = { ...request, certificate: "", token: true };
    let redeem!: () => void;
    const redeemed = new Promise<void>((r) => redeem = r);
    const op = this.opts.operations.start({
      description: "Waiting for a trust token to be used",
      class: "token",
      mayCancel: true,
      resources: {},
      metadata: {
        secret,
        fingerprint: this.opts.fingerprint(),
        addresses,
        request: stored,
        ...(expiresAt ? { expiresAt: expiresAt.toISOString() } : {}),
      },
      run: async ({ signal }) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          await new Promise<void>((resolve, reject) => {
            redeemed.then(resolve);
            signal.addEventListener("abort", () => reject(new Error("Token revoked")));
            if (expiresAt) {
              const ms = Math.min(expiresAt.getTime() - Date.now(), 2 ** 31 - 1);
              timer = setTimeout(() => reject(new Error("Token has expired")), Math.max(ms, 0));
            }
          });
        } finally {
          clearTimeout(timer);
          this.#pending.delete(op.id);
        }
      },
    });
    this.#pending.set(op.id, {
      id: op.id,
      secret,
      request: stored,
      expiresAt: expiresAt?.getTime() ?? Infinity,
      redeem,
    });
    return op;
  }

  /**
   * Redeems a token for the certificate a TLS client presented (DER as base64): trusts it with
   * the token's name, type and restrictions and ends the token. Forbidden for a token that is
   * unknown, used or expired.
   */
  redeem(sent: string, certificate: string): CertificateRecord {
    const secret = tokenSecret(sent);
    const token = [...this.#pending.values()].find((p) => sameSecret(p.secret, secret));
    if (!token) throw new Forbidden("No matching trust token: it is unknown, used or revoked");
    if (Date.now() > token.expiresAt) {
      this.#end(token);
      throw new Forbidden("Token has expired");
    }
    const rec = this.opts.trust.add({ ...token.request, certificate, token: false });
    this.#pending.delete(token.id);
    token.redeem();
    return rec;
  }

  #end(token: Pending): void {
    this.#pending.delete(token.id);
    try {
      this.opts.operations.cancel(token.id);
    } catch { /* already gone */ }
  }
}
