/** YAML output (`config show`, `snapshot show`, `monitor`, `--format yaml`). */
import { stringify } from "yaml";

/** YAML of any value, ending in exactly one newline and without document markers. */
export function renderYaml(value: unknown): string {
  const text = stringify(value).replace(/^---\n/, "").replace(/\n\.\.\.\n?$/, "\n");
  return `${text.replace(/\n+$/, "")}\n`;
}
