import assert from "node:assert/strict";
import { join } from "node:path";
import { generated } from "../scripts/gen_docs.ts";
import { ROOT } from "./helpers.ts";

Deno.test("docs/config.md and docs/cli.md match the code (run `deno task docs` after changes)", async () => {
  for (const [file, text] of Object.entries(await generated())) {
    assert.equal(await Deno.readTextFile(join(ROOT, file)), text, `${file} is stale`);
  }
});
