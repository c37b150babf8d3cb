/**
 * `deno task bundle`: the command line as the installed launcher runs it, in `dist/cli/`. One
 * chunk per command group (`deno bundle --code-splitting`), so a command loads only its own
 * code and nothing is resolved or transpiled per call. Two things keep Node's compatibility layer
 * (the biggest part of a command's start-up) out of the common path:
 * - commander's Node imports go to `node_shims.js` (scripts/bundle_shims.js);
 * - the bundler's CommonJS runtime imports `node:module` up front for the `require` of CommonJS
 *   packages; it is replaced by one that loads Node's built-ins only when first called
 *   (`process.getBuiltinModule`), which only YAML output does.
 * The daemon, the hub and the file helper are not bundled: the bundle imports them from the sources
 * (`../../daemon/daemon.ts`), where the helper finds the files it copies.
 *
 * Fails when what it rewrites is not found exactly as expected (a new commander, a new bundler).
 */
import { join } from "node:path";

const ROOT = join(import.meta.dirname!, "..");
const OUT = join(ROOT, "dist", "cli");

/** Modules the bundle leaves to the sources, and how they are reached from `dist/cli/`. */
const SOURCES: Record<string, string> = {
  "./daemon/daemon.ts": "../../daemon/daemon.ts",
  "./hub/server.ts": "../../hub/server.ts",
  "./drivers/forkfile/helper.ts": "../../drivers/forkfile/helper.ts",
};

/** commander's Node imports (in its chunk, as the bundler writes them) and their shims. */
const COMMANDER_IMPORTS: Record<string, string> = {
  'import { EventEmitter } from "node:events";': 'import { EventEmitter } from "./node_shims.js";',
  'import childProcess from "node:child_process";':
    'import { childProcess } from "./node_shims.js";',
  'import path from "node:path";': 'import { path } from "./node_shims.js";',
  'import fs from "node:fs";': 'import { fs } from "./node_shims.js";',
  'import process from "node:process";': 'import { process } from "./node_shims.js";',
};
const STRIP_VT = /^import \{ stripVTControlCharacters( as \w+)? \} from "node:util";$/gm;

const CJS_REQUIRE =
  'import { createRequire as __deno_internal_createRequire } from "node:module";\nvar __require = __deno_internal_createRequire(import.meta.url);';
const LAZY_REQUIRE = "var __require = (id) => globalThis.process.getBuiltinModule(id);";

async function run(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "inherit" })
    .output();
  if (!out.success) throw new Error(`deno ${args.join(" ")} failed`);
}

export async function bundle(): Promise<void> {
  await Deno.remove(OUT, { recursive: true }).catch(() => {});
  await run([
    "bundle",
    "--quiet",
    "--platform=deno",
    "--code-splitting",
    ...Object.keys(SOURCES).flatMap((s) => ["--external", s]),
    "--outdir",
    OUT,
    "main.ts",
  ]);
  const found = { sources: 0, commander: 0, stripVT: 0, require: 0 };
  for await (const e of Deno.readDir(OUT)) {
    if (!e.name.endsWith(".js")) continue;
    const file = join(OUT, e.name);
    let text = await Deno.readTextFile(file);
    for (const [spec, path] of Object.entries(SOURCES)) {
      const before = `import("${spec}")`;
      if (text.includes(before)) {
        text = text.replaceAll(before, `import("${path}")`);
        found.sources++;
      }
    }
    for (const [line, shim] of Object.entries(COMMANDER_IMPORTS)) {
      if (text.includes(line)) {
        text = text.replace(line, shim);
        found.commander++;
      }
    }
    text = text.replace(STRIP_VT, (_all, as = "") => {
      found.stripVT++;
      return `import { stripVTControlCharacters${as} } from "./node_shims.js";`;
    });
    if (text.includes(CJS_REQUIRE)) {
      text = text.replace(CJS_REQUIRE, LAZY_REQUIRE);
      found.require++;
    }
    for (const m of text.matchAll(/\b__require\("([^"]*)"\)/g)) {
      if (!m[1].startsWith("node:")) {
        throw new Error(`${e.name} requires "${m[1]}": only Node built-ins can be required`);
      }
    }
    await Deno.writeTextFile(file, text);
  }
  const want = {
    sources: Object.keys(SOURCES).length,
    commander: Object.keys(COMMANDER_IMPORTS).length,
    stripVT: 2,
    require: 1,
  };
  if (JSON.stringify(found) !== JSON.stringify(want)) {
    throw new Error(
      `The bundle is not shaped as expected: found ${JSON.stringify(found)}, want ${
        JSON.stringify(want)
      } (see scripts/bundle.ts)`,
    );
  }
  await Deno.copyFile(join(ROOT, "scripts", "bundle_shims.js"), join(OUT, "node_shims.js"));
}

if (import.meta.main) await bundle();
