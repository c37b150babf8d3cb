/**
 * Output formats shared by the CLI's `list`-style commands, shaped like Incus's `--format`:
 * an Incus box table, a borderless compact table, header-less CSV, one-line JSON and YAML.
 */

export type Format = "table" | "json" | "yaml" | "csv" | "compact";

export const FORMATS: readonly Format[] = ["table", "json", "yaml", "csv", "compact"];

/** Parse a `--format` value, refusing anything outside {@link FORMATS}. */
export function parseFormat(value: string): Format {
  const format = FORMATS.find((f) => f === value);
  if (!format) {
    throw new Error(`Unknown format "${value}": use one of ${FORMATS.join(", ")}`);
  }
  return format;
}

/** The `-f, --format` option of every list command: flags, help and default. */
export const FORMAT_OPTION = [
  "-f, --format <format>",
  `Output format: ${FORMATS.join(", ")}`,
  "table",
] as const;

export interface Column<T> {
  header: string;
  value: (row: T) => string;
}

/**
 * Render rows for `list` commands. json/yaml render `raw` (the API objects) as-is, falling back
 * to `rows`; table/csv/compact render the columns.
 */
/** Renders rows as {@link renderList} does, onto stdout. */
export async function printList<T>(
  format: Format,
  rows: T[],
  columns: Column<T>[],
  raw?: unknown,
): Promise<void> {
  Deno.stdout.writeSync(new TextEncoder().encode(await renderList(format, rows, columns, raw)));
}

export async function renderList<T>(
  format: Format,
  rows: T[],
  columns: Column<T>[],
  raw?: unknown,
): Promise<string> {
  switch (format) {
    case "json":
      return `${JSON.stringify(raw ?? rows)}\n`;
    case "yaml":
      // YAML's module is big: it is loaded only for YAML.
      return (await import("./yaml.ts")).renderYaml(raw ?? rows);
    case "table":
    case "csv":
    case "compact": {
      const headers = columns.map((c) => c.header);
      const cells = rows.map((row) => columns.map((c) => c.value(row)));
      if (format === "table") return renderTable(headers, cells);
      if (format === "csv") return renderCsv(cells);
      return renderCompact(headers, cells);
    }
  }
}

/** Incus-style box table: centred headers, left-aligned cells, multi-line cells grow the row. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = columnWidths(headers, rows);
  const border = `+${widths.map((w) => "-".repeat(w + 2)).join("+")}+`;
  const out = [border, ...physicalLines(headers, widths, centre, "|"), border];
  for (const row of rows) out.push(...physicalLines(row, widths, padEnd, "|"));
  if (rows.length > 0) out.push(border);
  return `${out.join("\n")}\n`;
}

/** Borderless table: left-aligned headers, columns two spaces apart, no trailing spaces. */
export function renderCompact(headers: string[], rows: string[][]): string {
  const widths = columnWidths(headers, rows);
  const out = [headers, ...rows].flatMap((cells) => physicalLines(cells, widths, padEnd, ""));
  return `${out.join("\n")}\n`;
}

/** Header-less CSV with RFC 4180 quoting, as `lxc list --format csv`; no rows gives "". */
export function renderCsv(rows: string[][]): string {
  return rows.map((row) => `${row.map(csvField).join(",")}\n`).join("");
}

const KIB = 1024;
const BYTE_UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/** Binary byte size as Incus prints it: "512B", "1.50MiB", "2.00GiB". */
export function formatBytes(n: number): string {
  if (n < 0) return `-${formatBytes(-n)}`;
  if (n < KIB) return `${Math.round(n)}B`;
  let value = n / KIB;
  let unit = 0;
  // Move up a unit once the two-decimal rendering would reach 1024 (1023.999KiB -> 1.00MiB).
  while (Number(value.toFixed(2)) >= KIB && unit < BYTE_UNITS.length - 1) {
    value /= KIB;
    unit++;
  }
  return `${value.toFixed(2)}${BYTE_UNITS[unit]}`;
}

/** Whole-second duration like Go's time.Duration: "45s", "1m23s", "2h0m5s", "0s". */
export function formatDuration(seconds: number): string {
  const total = Math.round(seconds);
  if (total < 0) return `-${formatDuration(-total)}`;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

type Align = (text: string, width: number) => string;

function length(text: string): number {
  return Array.from(text).length;
}

function lines(cell: string): string[] {
  return cell.split(/\r?\n/);
}

function padEnd(text: string, width: number): string {
  return text + " ".repeat(width - length(text));
}

function centre(text: string, width: number): string {
  const extra = width - length(text);
  const left = Math.floor(extra / 2);
  return " ".repeat(left) + text + " ".repeat(extra - left);
}

function columnWidths(headers: string[], rows: string[][]): number[] {
  return headers.map((header, i) =>
    Math.max(
      ...[header, ...rows.map((row) => row[i] ?? "")].flatMap(lines).map(length),
    )
  );
}

/** Lay one logical row out as physical lines; `edge` is "|" for a box table, "" for compact. */
function physicalLines(cells: string[], widths: number[], align: Align, edge: string): string[] {
  const split = widths.map((_, i) => lines(cells[i] ?? ""));
  const height = Math.max(1, ...split.map((l) => l.length));
  const out: string[] = [];
  for (let line = 0; line < height; line++) {
    const parts = widths.map((w, i) => align(split[i][line] ?? "", w));
    out.push(
      edge ? `${edge} ${parts.join(` ${edge} `)} ${edge}` : parts.join("  ").trimEnd(),
    );
  }
  return out;
}

function csvField(field: string): string {
  return /[",\r\n]/.test(field) ? `"${field.replaceAll('"', '""')}"` : field;
}
