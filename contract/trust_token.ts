/**
 * A trust token as the LXD and Incus clients print and read it: base64 of a JSON object with the
 * client name, the server certificate's fingerprint, the addresses to reach the server, the
 * secret and when it expires (`0001-01-01T00:00:00Z`: never).
 */

export interface TrustToken {
  client_name: string;
  fingerprint: string;
  addresses: string[];
  secret: string;
  expires_at: string;
}

/** Go's zero time, which the clients write for a token that does not expire. */
export const NEVER = "0001-01-01T00:00:00Z";

export function encodeToken(token: TrustToken): string {
  const bytes = new TextEncoder().encode(JSON.stringify(token));
  return btoa(String.fromCharCode(...bytes));
}

/** The token in `text` (standard or URL-safe base64); a malformed one throws a one-line error. */
export function decodeToken(text: string): TrustToken {
  const invalid = (why: string) => new Error(`Invalid trust token: ${why}`);
  let json: string;
  try {
    const b64 = text.trim().replaceAll("-", "+").replaceAll("_", "/");
    const bin = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="));
    json = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(bin, (c) => c.charCodeAt(0)),
    );
  } catch {
    throw invalid("not base64");
  }
  let t: Partial<TrustToken>;
  try {
    t = JSON.parse(json);
  } catch {
    throw invalid("not JSON");
  }
  if (typeof t !== "object" || t === null) throw invalid("not an object");
  if (typeof t.secret !== "string" || t.secret === "") throw invalid("no secret");
  if (typeof t.fingerprint !== "string" || !/^[0-9a-f]{64}$/i.test(t.fingerprint)) {
    throw invalid("no server fingerprint");
  }
  const addresses = t.addresses ?? [];
  if (!Array.isArray(addresses) || !addresses.every((a) => typeof a === "string")) {
    throw invalid("addresses are not a list of strings");
  }
  return {
    client_name: typeof t.client_name === "string" ? t.client_name : "",
    fingerprint: t.fingerprint.toLowerCase(),
    addresses,
    secret: t.secret,
    expires_at: typeof t.expires_at === "string" ? t.expires_at : NEVER,
  };
}

/** Whether a token's expiry (`expires_at`) has passed at `now`. */
export function tokenExpired(token: TrustToken, now = new Date()): boolean {
  if (token.expires_at === NEVER || token.expires_at.startsWith("0001-")) return false;
  const at = Date.parse(token.expires_at);
  return Number.isFinite(at) && at <= now.getTime();
}
