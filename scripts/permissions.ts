/**
 * The runtime flags outpost runs with — its narrowed Deno permissions and its V8 memory limits —
 * read from the `compile` task in deno.json so the release binary, the installed launcher and the
 * end-to-end tests all use the same set. `deno run scripts/permissions.ts` prints them (install.sh
 * uses that).
 */
const ROOT = new URL("..", import.meta.url).pathname;

export function runtimeFlags(): string[] {
  const deno = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  return String(deno.tasks.compile).split(/\s+/).filter((a) =>
    a.startsWith("--allow-") || a.startsWith("--v8-flags=")
  );
}

if (import.meta.main) console.log(runtimeFlags().join(" "));
