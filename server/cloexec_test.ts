import assert from "node:assert/strict";
import { createServer } from "node:net";
import { join } from "node:path";
import { closeOnExec } from "./cloexec.ts";

/** This process's descriptors (3 and up) that a child would inherit. */
function inheritable(): string[] {
  return [...Deno.readDirSync("/proc/self/fd")].map((e) => e.name).filter((fd) => {
    if (Number(fd) < 3) return false;
    try {
      const info = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
      return (parseInt(/^flags:\s+(\d+)/m.exec(info)![1], 8) & 0o2000000) === 0;
    } catch {
      return false;
    }
  });
}

Deno.test("closeOnExec() marks a node listener's socket close-on-exec, so children cannot hold it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-cloexec-" });
  const server = createServer();
  try {
    await new Promise<void>((r) => server.listen(join(dir, "s.sock"), r));
    assert.ok(
      inheritable().length > 0,
      "node's listener is opened inheritable (else this test proves nothing)",
    );
    assert.ok(closeOnExec() > 0);
    assert.deepEqual(inheritable(), []);
  } finally {
    await new Promise((r) => server.close(r));
    await Deno.remove(dir, { recursive: true });
  }
});
