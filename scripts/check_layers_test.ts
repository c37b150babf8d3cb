import assert from "node:assert/strict";
import { join } from "node:path";
import { checkLayers } from "./check_layers.ts";

const ROOT = join(import.meta.dirname!, "..");

Deno.test("the project's imports all go down the layers", async () => {
  assert.deepEqual(await checkLayers(ROOT), []);
});

Deno.test("an upward or sideways import fails the layers check, whatever its form", async () => {
  const root = await Deno.makeTempDir({ prefix: "outpost-layers-" });
  try {
    const write = async (path: string, text: string) => {
      await Deno.mkdir(join(root, path, ".."), { recursive: true });
      await Deno.writeTextFile(join(root, path), text);
    };
    await write("contract/errors.ts", "export class E {}\n");
    await write("agent/core.ts", 'import { E } from "../contract/errors.ts";\nexport { E };\n');
    await write("drivers/lxc/driver.ts", 'import type { E } from "../../agent/core.ts";\n');
    await write("cli/list.ts", 'const m = await import("../agent/core.ts");\n');
    await write("contract/client.ts", 'export * from "../api/app.ts";\n');
    await write("api/app.ts", 'import "../contract/errors.ts";\n');
    const found = (await checkLayers(root)).map((v) => `${v.file} -> ${v.imports}`).sort();
    assert.deepEqual(found, [
      "cli/list.ts -> agent/core.ts",
      "contract/client.ts -> api/app.ts",
      "drivers/lxc/driver.ts -> agent/core.ts",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
