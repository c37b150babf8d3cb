import assert from "node:assert/strict";
import { runtimeFlags } from "../scripts/permissions.ts";

/**
 * A child process (outpost's own runtime flags) fills ~48 MiB of native memory with small buffers
 * and drops them; prints its RSS in KiB before and after three ticks of `settle()` (`touched` says
 * whether work was recorded first).
 */
async function rssAround(touched: boolean): Promise<{ before: number; after: number }> {
  const src = `
    import { tuneNativeMemory } from "${new URL("./native_memory.ts", import.meta.url).href}";
    const memory = tuneNativeMemory();
    const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);
    let keep = [];
    for (let i = 0; i < 48 * 1024; i++) keep.push(new Uint8Array(1024).fill(1));
    keep = undefined;
    ${touched ? "memory.touch();" : ""}
    const before = rss();
    for (let tick = 0; tick < 3; tick++) {
      memory.settle();
      await new Promise((r) => setTimeout(r, 300));
    }
    console.log(JSON.stringify({ before, after: rss() }));
    memory.close();
  `;
  const flags = runtimeFlags().filter((f) => f.startsWith("--v8-flags="));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", ...flags, src],
    stderr: "inherit",
  }).output();
  assert(out.success, "the child failed");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("after work, settle() gives dropped buffers' memory back to the kernel", async () => {
  const { before, after } = await rssAround(true);
  assert(before - after > 24 * 1024, `RSS went from ${before} KiB to ${after} KiB`);
});

Deno.test("settle() without recorded work changes nothing", async () => {
  const { before, after } = await rssAround(false);
  assert(before - after < 8 * 1024, `RSS went from ${before} KiB to ${after} KiB`);
});
