/**
 * Reads kernel files under /proc and /sys. Deno refuses those paths to any program that does not
 * run with --allow-all, and outpost runs with narrowed permissions, so the reads go through one
 * `grep` process per batch (allowed in --allow-run) instead of the file system API.
 */
import type { Runner } from "./runner.ts";

/**
 * The contents of each path, in order; `undefined` for a file that is missing or unreadable.
 * Paths must not contain ":" (grep's separator); kernel paths under outpost's control never do.
 */
export async function readHostFiles(
  runner: Runner,
  paths: string[],
): Promise<(string | undefined)[]> {
  if (paths.length === 0) return [];
  const r = await runner.run(["grep", "-H", "-s", "--", "", ...paths], { allowFailure: true });
  const lines = new Map<string, string[]>();
  for (const line of r.stdout.split("\n")) {
    const at = line.indexOf(":");
    if (at < 0) continue;
    const path = line.slice(0, at);
    (lines.get(path) ?? lines.set(path, []).get(path)!).push(line.slice(at + 1));
  }
  return paths.map((p) => lines.get(p)?.join("\n"));
}

export async function readHostFile(runner: Runner, path: string): Promise<string | undefined> {
  return (await readHostFiles(runner, [path]))[0];
}
