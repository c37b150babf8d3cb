/**
 * The hub's secrets (join and trust tokens, dashboard logins and sessions): 256 random bits as
 * hex, kept only as their sha256, and short random ids to name them by.
 */
import { createHash, randomBytes } from "node:crypto";

/** A new secret: 256 random bits, hex. */
export function newSecret(): string {
  return randomBytes(32).toString("hex");
}

/** What the hub stores of a secret. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** A short random id (12 hex digits) for a token's listing and revocation. */
export function newId(): string {
  return randomBytes(6).toString("hex");
}
