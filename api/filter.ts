/**
 * The `filter=` query parameter of list endpoints (Incus's `api_filtering`): clauses of
 * `FIELD eq|ne VALUE`, combined with `and` / `or` (and `and` binding tighter), each optionally
 * preceded by `not`. Fields are dotted paths into the API object (`status`, `config.user.foo`,
 * `expanded_config.limits.cpu`); config keys with dots are matched as one key. Values may be
 * quoted. Comparison is case-insensitive for status-like values, as Incus does.
 */
import { BadRequest } from "../contract/errors.ts";

interface Clause {
  not: boolean;
  field: string;
  op: "eq" | "ne";
  value: string;
}

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(\S+))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[0].trim() === "") break;
    tokens.push(m[1] ?? m[2] ?? m[3]);
  }
  return tokens;
}

/** Parses a filter into OR-groups of AND-ed clauses; an empty filter has no groups. */
export function parseFilter(text: string): Clause[][] {
  const tokens = tokenize(text.trim());
  const groups: Clause[][] = [];
  let group: Clause[] = [];
  let i = 0;
  while (i < tokens.length) {
    let not = false;
    if (tokens[i].toLowerCase() === "not") {
      not = true;
      i++;
    }
    const [field, op, value] = tokens.slice(i, i + 3);
    if (field === undefined || op === undefined || value === undefined) {
      throw new BadRequest(`Invalid filter "${text}": expected FIELD eq|ne VALUE`);
    }
    const lop = op.toLowerCase();
    if (lop !== "eq" && lop !== "ne") {
      throw new BadRequest(`Invalid filter operator "${op}": use eq or ne`);
    }
    group.push({ not, field, op: lop, value });
    i += 3;
    const joiner = tokens[i]?.toLowerCase();
    if (joiner === undefined) break;
    if (joiner === "or") {
      groups.push(group);
      group = [];
    } else if (joiner !== "and") {
      throw new BadRequest(`Invalid filter "${text}": expected and/or, got "${tokens[i]}"`);
    }
    i++;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** The value at a dotted path; a map's keys may themselves contain dots (config keys). */
function lookup(obj: unknown, path: string): unknown {
  if (obj === null || typeof obj !== "object") return undefined;
  const rec = obj as Record<string, unknown>;
  if (path in rec) return rec[path];
  const parts = path.split(".");
  for (let n = parts.length - 1; n >= 1; n--) {
    const head = parts.slice(0, n).join(".");
    if (head in rec) return lookup(rec[head], parts.slice(n).join("."));
  }
  return undefined;
}

function matches(obj: unknown, c: Clause): boolean {
  const v = lookup(obj, c.field);
  const text = v === undefined || v === null
    ? ""
    : typeof v === "object"
    ? JSON.stringify(v)
    : String(v);
  const equal = text === c.value || text.toLowerCase() === c.value.toLowerCase();
  const result = c.op === "eq" ? equal : !equal;
  return c.not ? !result : result;
}

/** Keeps the objects the filter selects (all of them for an empty filter). */
export function applyFilter<T>(items: T[], filter: string | undefined): T[] {
  if (!filter || filter.trim() === "") return items;
  const groups = parseFilter(filter);
  return items.filter((item) => groups.some((g) => g.every((c) => matches(item, c))));
}
