/**
 * The CLI bundle the installed launcher runs (`deno task bundle`: commander on shims of the Node
 * built-ins, one chunk per command group) says and does what the sources say and do.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runtimeFlags } from "../scripts/permissions.ts";
import { bundle } from "../scripts/bundle.ts";
import { ROOT } from "./helpers.ts";

async function outpost(main: string, args: string[], dir: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-prompt", ...runtimeFlags(), main, "--state-dir", dir, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("the CLI bundle answers as the sources do: version, help, typos, bad options, no daemon", async () => {
  await bundle();
  const dir = await Deno.makeTempDir({ prefix: "outpost-bundle-" });
  try {
    for (
      const args of [
        ["--version"],
        ["--help"],
        ["list", "--help"],
        ["exec", "--help"],
        ["image", "--help"],
        ["lst"],
        ["list", "--format", "nope"],
        ["exec"],
        ["list"],
        ["launch", "busybox", "c1", "-c", "nope"],
      ]
    ) {
      const source = await outpost(join(ROOT, "main.ts"), args, dir);
      const bundled = await outpost(join(ROOT, "dist", "cli", "main.js"), args, dir);
      assert.deepEqual(bundled, source, `outpost ${args.join(" ")}`);
      assert.ok(
        source.stdout !== "" || source.stderr !== "",
        `outpost ${args.join(" ")} says something`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
