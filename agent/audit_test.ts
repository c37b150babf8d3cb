import assert from "node:assert/strict";
import { join } from "node:path";
import { AuditLog } from "./audit.ts";

Deno.test("AuditLog writes one JSON line per call and rotates past its size, keeping one file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-audit-" });
  try {
    const file = join(dir, "audit.log");
    const log = new AuditLog(file, () => {}, 300);
    const entry = { who: "unix", method: "POST", path: "/1.0/instances", status: 202 };
    log.record(entry, new Date("2026-01-01T00:00:00Z"));
    const first = (await Deno.readTextFile(file)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(first, [{ time: "2026-01-01T00:00:00.000Z", ...entry }]);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    for (let i = 0; i < 10; i++) log.record({ ...entry, path: `/1.0/instances/c${i}` });
    const current = await Deno.readTextFile(file);
    const rotated = await Deno.readTextFile(`${file}.1`);
    assert.ok(current.length <= 300 && rotated.length <= 300);
    assert.match(current, /c9/);
    await assert.rejects(Deno.stat(`${file}.2`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AuditLog reports a write it cannot make and never throws", () => {
  const said: string[] = [];
  const log = new AuditLog("/nonexistent-dir/audit.log", (m) => said.push(m));
  log.record({ who: "unix", method: "DELETE", path: "/1.0/instances/x", status: 200 });
  assert.match(said[0], /audit log/);
});
