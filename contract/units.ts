const UNITS: Record<string, number> = {
  B: 1,
  kB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  PB: 1e15,
  EB: 1e18,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  PiB: 2 ** 50,
  EiB: 2 ** 60,
};

/** Parses an Incus byte size ("64MiB", "1GB", "512", "1.5GiB") into bytes, or undefined. */
export function parseByteSize(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(value.trim());
  if (!m) return undefined;
  const unit = m[2] === "" ? "B" : m[2];
  if (!Object.hasOwn(UNITS, unit)) return undefined;
  const factor = UNITS[unit];
  return Math.floor(Number(m[1]) * factor);
}

/** CPU ids above this are refused: no host has that many, and ranges stay cheap to expand. */
const MAX_CPU_ID = 8191;

/** Parses a CPU set ("0-2,4") into sorted CPU ids, or undefined. */
export function parseCpuSet(value: string): number[] | undefined {
  const ids = new Set<number>();
  for (const part of value.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to > MAX_CPU_ID) return undefined;
    for (let i = from; i <= to; i++) ids.add(i);
  }
  return [...ids].sort((a, b) => a - b);
}

/** A boolean config value as Incus reads it: "true" or "1". */
export function isTrue(value: string | undefined): boolean {
  return value === "true" || value === "1";
}

const EXPIRY_PART = /^(\d{1,6})(S|M|H|d|w|m|y)$/;

/**
 * The time `value` after `from`, for Incus's expiry durations (`core.remote_token_expiry`,
 * `snapshots.expiry`): space-separated parts `<n><unit>`, units S (seconds), M (minutes), H
 * (hours), d, w, m (months), y. Throws an Error naming the part it cannot read.
 */
export function addExpiry(from: Date, value: string): Date {
  const t = new Date(from);
  for (const part of value.trim().split(/\s+/)) {
    const m = EXPIRY_PART.exec(part);
    if (!m) {
      throw new Error(`Invalid duration "${part}": use <number><S|M|H|d|w|m|y>, such as 1H or 2d`);
    }
    const n = Number(m[1]);
    switch (m[2]) {
      case "S":
        t.setUTCSeconds(t.getUTCSeconds() + n);
        break;
      case "M":
        t.setUTCMinutes(t.getUTCMinutes() + n);
        break;
      case "H":
        t.setUTCHours(t.getUTCHours() + n);
        break;
      case "d":
        t.setUTCDate(t.getUTCDate() + n);
        break;
      case "w":
        t.setUTCDate(t.getUTCDate() + 7 * n);
        break;
      case "m":
        t.setUTCMonth(t.getUTCMonth() + n);
        break;
      case "y":
        t.setUTCFullYear(t.getUTCFullYear() + n);
        break;
    }
  }
  return t;
}
