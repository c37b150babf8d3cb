import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadDirReader } from "./dir_reader.ts";

const openDir = loadDirReader();

Deno.test("the dir reader yields every name once, without . and .., then null", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-dirs-" });
  try {
    const names = Array.from({ length: 500 }, (_, i) => `f${i}-é`);
    for (const n of names) writeFileSync(join(dir, n), "");
    mkdirSync(join(dir, "sub"));
    const d = openDir(dir);
    const seen: string[] = [];
    for (let n = d.next(); n !== null; n = d.next()) seen.push(n);
    assert.equal(d.next(), null);
    d.close();
    d.close(); // twice is harmless
    assert.equal(d.next(), null);
    assert.deepEqual(seen.sort(), [...names, "sub"].sort());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the dir reader throws errors carrying the kernel's code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-dirs-" });
  try {
    writeFileSync(join(dir, "file"), "");
    assert.throws(() => openDir(join(dir, "missing")), { code: "ENOENT" });
    assert.throws(() => openDir(join(dir, "file")), { code: "ENOTDIR" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
