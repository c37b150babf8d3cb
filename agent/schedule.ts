/**
 * `snapshots.schedule`: five cron fields (minute hour day-of-month month day-of-week; `*`, `N`,
 * `A-B`, `*\/S`, `A-B/S` and lists of them) or `@hourly`, `@daily`, `@midnight`, `@weekly`,
 * `@monthly`, `@yearly`, `@annually`, matched in UTC (pure).
 */

export interface Schedule {
  minute: Set<number>;
  hour: Set<number>;
  dom: Set<number>;
  month: Set<number>;
  dow: Set<number>;
  /** Both day fields restricted: a day matching either is a match (cron's rule). */
  eitherDay: boolean;
}

const MACROS: Record<string, string> = {
  "@hourly": "0 * * * *",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@weekly": "0 0 * * 0",
  "@monthly": "0 0 1 * *",
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
};

const RANGES: [number, number][] = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 7]];

function field(text: string, [lo, hi]: [number, number]): Set<number> | undefined {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^(\*|(\d{1,2})(?:-(\d{1,2}))?)(?:\/(\d{1,2}))?$/.exec(part);
    if (!m) return undefined;
    const from = m[1] === "*" ? lo : Number(m[2]);
    const to = m[1] === "*" ? hi : m[3] !== undefined ? Number(m[3]) : m[4] ? hi : from;
    const step = m[4] ? Number(m[4]) : 1;
    if (from < lo || to > hi || from > to || step < 1) return undefined;
    for (let v = from; v <= to; v += step) out.add(v);
  }
  return out;
}

/** The schedule `text` says, or undefined if it is not one. */
export function parseSchedule(text: string): Schedule | undefined {
  const fields = (MACROS[text.trim()] ?? text).trim().split(/\s+/);
  if (fields.length !== 5) return undefined;
  const sets = fields.map((f, i) => field(f, RANGES[i]));
  if (sets.some((s) => s === undefined)) return undefined;
  const [minute, hour, dom, month, dow] = sets as Set<number>[];
  if (dow.has(7)) dow.add(0);
  return { minute, hour, dom, month, dow, eitherDay: fields[2] !== "*" && fields[4] !== "*" };
}

/** Whether the minute of `t` (UTC) is one the schedule names. */
export function matches(s: Schedule, t: Date): boolean {
  if (!s.minute.has(t.getUTCMinutes()) || !s.hour.has(t.getUTCHours())) return false;
  if (!s.month.has(t.getUTCMonth() + 1)) return false;
  const dom = s.dom.has(t.getUTCDate());
  const dow = s.dow.has(t.getUTCDay());
  return s.eitherDay ? dom || dow : dom && dow;
}

/** Whether any minute after `from` up to `to` (at most a day of them) is one the schedule names. */
export function dueBetween(s: Schedule, from: Date, to: Date): boolean {
  const start = Math.floor(from.getTime() / 60_000) + 1;
  const end = Math.floor(to.getTime() / 60_000);
  for (let m = Math.max(start, end - 1440); m <= end; m++) {
    if (matches(s, new Date(m * 60_000))) return true;
  }
  return false;
}
