/**
 * Websocket upgrades, checked before Deno is asked: a request that is not a valid RFC 6455
 * upgrade is a 400 in the error envelope, never a TypeError from `Deno.upgradeWebSocket` (a 500).
 */
import { BadRequest, messageOf } from "../contract/errors.ts";

/** A header's comma-separated tokens, trimmed and lower-cased. */
function tokens(req: Request, name: string): string[] {
  return (req.headers.get(name) ?? "").split(",").map((t) => t.trim().toLowerCase());
}

/** What is wrong with a websocket upgrade request, or undefined for a valid one. */
export function upgradeProblem(req: Request, what = "This endpoint"): string | undefined {
  if (!tokens(req, "upgrade").includes("websocket")) {
    return `${what} needs a websocket upgrade`;
  }
  if (req.method !== "GET") return "Invalid websocket upgrade: use GET";
  if (!tokens(req, "connection").includes("upgrade")) {
    return "Invalid websocket upgrade: the Connection header must include Upgrade";
  }
  // RFC 6455: the key is 16 random bytes in base64.
  if (!/^[A-Za-z0-9+/]{22}==$/.test((req.headers.get("sec-websocket-key") ?? "").trim())) {
    return "Invalid websocket upgrade: Sec-WebSocket-Key must be 16 bytes in base64";
  }
  if ((req.headers.get("sec-websocket-version") ?? "").trim() !== "13") {
    return "Unsupported websocket version: use Sec-WebSocket-Version 13";
  }
  return undefined;
}

/** Throws a BadRequest naming what is wrong with a websocket upgrade request. */
export function checkUpgrade(req: Request, what?: string): void {
  const problem = upgradeProblem(req, what);
  if (problem) throw new BadRequest(problem);
}

/**
 * Runs `upgrade` (which calls `Deno.upgradeWebSocket`) for a checked request; a refusal by Deno
 * that the checks missed is a 400 too.
 */
export function guardUpgrade<T>(req: Request, upgrade: () => T, what?: string): T {
  checkUpgrade(req, what);
  try {
    return upgrade();
  } catch (err) {
    if (err instanceof TypeError) {
      throw new BadRequest(`Invalid websocket upgrade: ${messageOf(err)}`);
    }
    throw err;
  }
}
