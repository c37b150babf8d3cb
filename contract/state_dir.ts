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
