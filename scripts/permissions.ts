/**
 * The narrowed Deno permissions outpost runs with, read from the `compile` task in deno.json so
 * the release binary, the installed launcher and the end-to-end tests all use the same set.
 * `deno run scripts/permissions.ts` prints them (install.sh uses that).
 */
const ROOT = new URL("..", import.meta.url).pathname;

export function permissionFlags(): string[] {
  const deno = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  return String(deno.tasks.compile).split(/\s+/).filter((a) => a.startsWith("--allow-"));
}

if (import.meta.main) console.log(permissionFlags().join(" "));
