import assert from "node:assert/strict";
import { join } from "node:path";
import { checkHostAccess, checkLayers } from "./check_layers.ts";

const ROOT = join(import.meta.dirname!, "..");

/** Runs `fn` on a temp tree holding `files` (path → text), removed afterwards. */
async function withTree(
  files: Record<string, string>,
  fn: (root: string) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "outpost-layers-" });
  try {
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(join(root, path, ".."), { recursive: true });
      await Deno.writeTextFile(join(root, path), text);
    }
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("the project's imports all go down the layers", async () => {
  assert.deepEqual(await checkLayers(ROOT), []);
});

Deno.test("the project's api/ modules use no host API", async () => {
  assert.deepEqual(await checkHostAccess(ROOT), []);
});

Deno.test("an upward or sideways import fails the layers check, whatever its form", () =>
  withTree({
    "contract/errors.ts": "export class E {}\n",
    "agent/core.ts": 'import { E } from "../contract/errors.ts";\nexport { E };\n',
    "drivers/lxc/driver.ts": 'import type { E } from "../../agent/core.ts";\n',
    "cli/list.ts": 'const m = await import("../agent/core.ts");\n',
    "contract/client.ts": 'export * from "../api/app.ts";\n',
    "api/app.ts": 'import "../contract/errors.ts";\n',
  }, async (root) => {
    const found = (await checkLayers(root)).map((v) => `${v.file} -> ${v.imports}`).sort();
    assert.deepEqual(found, [
      "cli/list.ts -> agent/core.ts",
      "contract/client.ts -> api/app.ts",
      "drivers/lxc/driver.ts -> agent/core.ts",
    ]);
  }));

Deno.test("a host API or a core host adapter used in api/ fails the check, whatever its form; tests and the core may", () =>
  withTree({
    "api/routes/logs.ts": [
      "const a = await Deno.readFile(p);",
      "const b = Deno.readTextFileSync(p); const c = new Deno.Command(x);",
      "for await (const e of Deno.readDir(d)) await Deno.remove(e.name);",
      "const f = await Deno.open(p); await Deno.stat(p); await Deno.writeFile(p, a);",
      "const ok = Deno.pid + Deno.upgradeWebSocket(req).response.status + Deno.openKv;",
    ].join("\n"),
    "api/routes/host.ts": 'import { readFileSync } from "node:fs";\n',
    "api/deep/run.ts": "import { spawn } from 'node:child_process';\n",
    "api/os.ts": 'import { hostname } from "node:os";\nawait import("node:fs/promises");\n',
    "api/routes/exec.ts": "const dir = agent.paths.logs(n); agent.drivers.get(t).exec();\n" +
      "agent.instances.get(n); agent.runner.run(x); agent.store.db; agent.pathsOf;\n",
    "api/app_test.ts": "await Deno.remove(dir, { recursive: true });\n",
    "agent/logs.ts": "await Deno.readFile(p); new Deno.Command(x);\n",
  }, async (root) => {
    const found = (await checkHostAccess(root)).map((u) => `${u.file}:${u.line} ${u.uses}`).sort();
    assert.deepEqual(found, [
      "api/deep/run.ts:1 'node:child_process'",
      'api/os.ts:1 "node:os"',
      'api/os.ts:2 "node:fs/promises"',
      "api/routes/exec.ts:1 agent.drivers",
      "api/routes/exec.ts:1 agent.paths",
      "api/routes/exec.ts:2 agent.runner",
      "api/routes/exec.ts:2 agent.store",
      'api/routes/host.ts:1 "node:fs"',
      "api/routes/logs.ts:1 Deno.readFile",
      "api/routes/logs.ts:2 Deno.Command",
      "api/routes/logs.ts:2 Deno.readTextFileSync",
      "api/routes/logs.ts:3 Deno.readDir",
      "api/routes/logs.ts:3 Deno.remove",
      "api/routes/logs.ts:4 Deno.open",
      "api/routes/logs.ts:4 Deno.stat",
      "api/routes/logs.ts:4 Deno.writeFile",
    ]);
  }));
