/** Where a local client finds the daemon: its state dir and the unix socket in it. */

export const DEFAULT_STATE_DIR = "/var/lib/outpost";

/** The state dir from `--state-dir`, then `OUTPOST_DIR`, then the default. */
export function resolveStateDir(flag?: string): string {
  return flag ?? Deno.env.get("OUTPOST_DIR") ?? DEFAULT_STATE_DIR;
}

/** The daemon's API socket in a state dir. */
export function socketPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/unix.socket`;
}

export const DEFAULT_HUB_DIR = "/var/lib/outpost-hub";

/** The hub's state dir: `--state-dir` given to a hub command, then `OUTPOST_HUB_DIR`, then the default. */
export function resolveHubDir(flag?: string): string {
  return flag ?? Deno.env.get("OUTPOST_HUB_DIR") ?? DEFAULT_HUB_DIR;
}

/** The hub's admin socket in its state dir. */
export function hubSocketPath(hubDir: string): string {
  return `${hubDir.replace(/\/+$/, "")}/hub.socket`;
}
