/**
 * Repeated authentication failures, per source address: past a number of refusals in a window,
 * an address is refused at once (429) until the window has passed. The table is bounded: when
 * full, the oldest windows go first.
 */

/** Refusals an address may cause in one window before it is held off. */
export const MAX_FAILURES = 30;
export const WINDOW_MS = 60_000;
/** Addresses tracked at once. */
export const MAX_ADDRESSES = 10_000;

interface Window {
  start: number;
  failures: number;
}

export class AuthFailures {
  #by = new Map<string, Window>();

  constructor(
    private maxFailures = MAX_FAILURES,
    private windowMs = WINDOW_MS,
    private maxAddresses = MAX_ADDRESSES,
  ) {}

  /** Counts one refusal of `address`. */
  fail(address: string, now = Date.now()): void {
    let w = this.#by.get(address);
    if (!w || now - w.start >= this.windowMs) {
      this.#by.delete(address);
      if (this.#by.size >= this.maxAddresses) this.#prune(now);
      w = { start: now, failures: 0 };
      this.#by.set(address, w);
    }
    w.failures++;
  }

  /** Whether `address` is held off now: the seconds left, or 0. */
  heldOff(address: string, now = Date.now()): number {
    const w = this.#by.get(address);
    if (!w || w.failures < this.maxFailures) return 0;
    const left = w.start + this.windowMs - now;
    if (left <= 0) {
      this.#by.delete(address);
      return 0;
    }
    return Math.ceil(left / 1000);
  }

  /** Windows that have passed go; if still full, the oldest half (Map order is insertion). */
  #prune(now: number): void {
    for (const [a, w] of this.#by) if (now - w.start >= this.windowMs) this.#by.delete(a);
    if (this.#by.size < this.maxAddresses) return;
    let drop = Math.ceil(this.#by.size / 2);
    for (const a of this.#by.keys()) {
      if (drop-- <= 0) break;
      this.#by.delete(a);
    }
  }

  get size(): number {
    return this.#by.size;
  }
}

/**
 * Loopback callers are processes of this host: they are never held off for failing (a remote
 * attacker cannot come from there, and local tools must not lock each other out).
 */
export function isLoopback(address: string): boolean {
  return /^(::ffff:)?127\./.test(address) || address === "::1";
}
