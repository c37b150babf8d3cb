/**
 * The layers check (part of `deno task check`): every import of ours goes down, never up or
 * sideways, as docs/architecture.md draws them. It reads each module's relative imports (static,
 * dynamic, type-only and re-exports), so an upward import added anywhere fails the check.
 *
 * `deno run -A scripts/check_layers.ts [ROOT]` prints each offending import and exits 1.
 */
import { dirname, join, relative, resolve } from "node:path";

/** Each layer and the layers it may import (its own always). */
export const LAYERS: Record<string, readonly string[]> = {
  contract: [],
  drivers: ["contract"],
  image_build: ["contract"],
  agent: ["drivers", "contract"],
  api: ["agent", "contract"],
  daemon: ["api", "agent", "drivers", "contract"],
  cli: ["image_build", "contract"],
  "main.ts": ["cli", "daemon", "drivers", "contract"],
};

/** Folders outside the layers: they may import anything. */
const FREE = new Set(["tests", "bench", "scripts", "node_modules", "dist"]);

/** What a unit test beside the code may import besides its layer's imports. */
const TEST_SUPPORT = ["tests", "scripts"];

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

if (import.meta.main) {
  const root = resolve(Deno.args[0] ?? join(import.meta.dirname!, ".."));
  const violations = await checkLayers(root);
  for (const v of violations) {
    const why = LAYERS[v.from] ? `${v.from}/ may not import ${v.to}/` : `${v.from} is in no layer`;
    console.error(`${v.file} imports ${v.imports}: ${why}`);
  }
  if (violations.length > 0) {
    console.error(`${violations.length} import(s) against the layers (docs/architecture.md)`);
    Deno.exit(1);
  }
}
