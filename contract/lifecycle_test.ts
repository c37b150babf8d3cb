import assert from "node:assert/strict";
import { LIFECYCLE_ACTIONS } from "./lifecycle.ts";

Deno.test("docs/api.md names every lifecycle action, and no other", async () => {
  const docs = await Deno.readTextFile(new URL("../docs/api.md", import.meta.url));
  const paragraph = docs.slice(docs.indexOf("Lifecycle events"));
  const named = paragraph.slice(0, paragraph.indexOf("\n\n")).match(/`[a-z-]+`/g) ?? [];
  assert.deepEqual(
    named.map((n) => n.slice(1, -1)).sort(),
    [...LIFECYCLE_ACTIONS].sort(),
  );
});
