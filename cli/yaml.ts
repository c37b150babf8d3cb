/** YAML output (`config show`, `snapshot show`, `monitor`, `--format yaml`) and input (`edit`). */
import { parse, stringify } from "yaml";
import { UsageError } from "./context.ts";

/** YAML of any value, ending in exactly one newline and without document markers. */
export function renderYaml(value: unknown): string {
  const text = stringify(value).replace(/^---\n/, "").replace(/\n\.\.\.\n?$/, "\n");
  return `${text.replace(/\n+$/, "")}\n`;
}

/** Parses a YAML document (`profile edit`, `profile create < file`); a syntax error is a UsageError. */
export function parseYaml(text: string): unknown {
  try {
    return parse(text);
  } catch (err) {
    throw new UsageError(`Invalid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
}
