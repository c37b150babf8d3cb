/**
 * The layers check (part of `deno task check`): every import of ours goes down, never up or
 * sideways, as docs/architecture.md draws them. It reads each module's relative imports (static,
 * dynamic, type-only and re-exports), so an upward import added anywhere fails the check. And the
 * layers that must not touch the host (`api/`: parse, call the core, render) use no host API: no
 * command, no file, no host facts (a scan of their source, tests beside them excepted).
 *
 * `deno run -A scripts/check_layers.ts [ROOT]` prints each offending import or use and exits 1.
 */
import { dirname, join, relative, resolve } from "node:path";

/** Each layer and the layers it may import (its own always). */
export const LAYERS: Record<string, readonly string[]> = {
  contract: [],
  drivers: ["contract"],
  image_build: ["contract"],
  agent: ["drivers", "server", "contract"],
  server: ["contract"],
  api: ["agent", "server", "contract"],
  daemon: ["api", "agent", "server", "drivers", "contract"],
  cli: ["image_build", "contract"],
  hub: ["server", "contract"],
  "main.ts": ["cli", "daemon", "hub", "drivers", "contract"],
};

/** Folders outside the layers: they may import anything. */
const FREE = new Set(["tests", "bench", "scripts", "node_modules", "dist"]);

/** What a unit test beside the code may import besides its layer's imports. */
const TEST_SUPPORT = ["tests", "scripts"];

/** The layers whose modules may not use the host APIs below. */
const NO_HOST_ACCESS = ["api"];

/**
 * Deno's host APIs (commands, files, processes, native code), Node's modules for them, and the
 * core's own host adapters (its paths, drivers, runner and store), which routes reach only
 * through a core method.
 */
const HOST_API = new RegExp(
  [
    String.raw`\bDeno\.(?:Command|ChildProcess|run|kill|dlopen|open|create|truncate|readFile|` +
    String.raw`readTextFile|readDir|readLink|realPath|stat|lstat|writeFile|writeTextFile|mkdir|` +
    String.raw`makeTempDir|makeTempFile|remove|rename|copyFile|link|symlink|chmod|chown|` +
    String.raw`utime|watchFs)(?:Sync)?\b`,
    String.raw`["']node:(?:fs|child_process|os)(?:/\w+)?["']`,
    String.raw`\bagent\.(?:paths|drivers|runner|store)\b`,
  ].join("|"),
  "g",
);

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;

export interface Violation {
  file: string;
  imports: string;
  from: string;
  to: string;
}

/** The layer of a path relative to the root: its first segment (a file at the root and its test are one). */
function layerOf(rel: string): string {
  return rel.split("/")[0].replace(/_test\.ts$/, ".ts");
}

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith(".") || FREE.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory) yield* tsFiles(p);
    else if (e.isFile && p.endsWith(".ts")) yield p;
  }
}

/** The imports of ours that go against LAYERS, under `root`. */
export async function checkLayers(root: string): Promise<Violation[]> {
  const out: Violation[] = [];
  for await (const file of tsFiles(root)) {
    const rel = relative(root, file);
    const from = layerOf(rel);
    const allowed = LAYERS[from];
    const src = await Deno.readTextFile(file);
    for (const m of src.matchAll(IMPORT)) {
      const target = relative(root, resolve(dirname(file), m[1]));
      const to = layerOf(target);
      if (to === from) continue;
      if (file.endsWith("_test.ts") && TEST_SUPPORT.includes(to)) continue;
      if (!allowed || !allowed.includes(to)) out.push({ file: rel, imports: target, from, to });
    }
  }
  return out;
}

export interface HostAccess {
  file: string;
  line: number;
  /** The API used, as written (`Deno.readFile`, `"node:fs"`). */
  uses: string;
}

/** The host APIs used by modules of the NO_HOST_ACCESS layers, under `root`. */
export async function checkHostAccess(root: string): Promise<HostAccess[]> {
  const out: HostAccess[] = [];
  for (const layer of NO_HOST_ACCESS) {
    let files: string[];
    try {
      files = await Array.fromAsync(tsFiles(join(root, layer)));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    for (const file of files.filter((f) => !f.endsWith("_test.ts"))) {
      const lines = (await Deno.readTextFile(file)).split("\n");
      lines.forEach((text, i) => {
        for (const m of text.matchAll(HOST_API)) {
          out.push({ file: relative(root, file), line: i + 1, uses: m[0] });
        }
      });
    }
  }
  return out;
}

if (import.meta.main) {
  const root = resolve(Deno.args[0] ?? join(import.meta.dirname!, ".."));
  const violations = await checkLayers(root);
  for (const v of violations) {
    const why = LAYERS[v.from] ? `${v.from}/ may not import ${v.to}/` : `${v.from} is in no layer`;
    console.error(`${v.file} imports ${v.imports}: ${why}`);
  }
  const uses = await checkHostAccess(root);
  for (const u of uses) {
    console.error(
      `${u.file}:${u.line} uses ${u.uses}: the host is the core's (agent/, drivers/): call a core method`,
    );
  }
  if (violations.length > 0) {
    console.error(`${violations.length} import(s) against the layers (docs/architecture.md)`);
  }
  if (uses.length > 0) console.error(`${uses.length} use(s) of host APIs where none may be`);
  if (violations.length + uses.length > 0) Deno.exit(1);
}
