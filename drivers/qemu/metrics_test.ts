import assert from "node:assert/strict";
import { parseProcStat, parseVmRss, qemuMetrics } from "./metrics.ts";
import { vmCpus, vmMemoryMiB } from "./sizing.ts";
import { Runner } from "../runner.ts";

Deno.test("parseProcStat() reads utime and stime after a command name with spaces and parentheses", () => {
  const line = "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
  assert.deepEqual(parseProcStat(line), { user: 2.5, system: 0.75 });
  assert.throws(() => parseProcStat("1 (x) S"), /Unreadable/);
});

Deno.test("parseVmRss() reads VmRSS in bytes", () => {
  assert.equal(parseVmRss("Name:\tqemu\nVmRSS:\t   2048 kB\n"), 2 * 2 ** 20);
  assert.throws(() => parseVmRss("Name:\tqemu\n"), /Unreadable/);
});

Deno.test("vmCpus() and vmMemoryMiB() size a VM from limits.cpu and limits.memory", () => {
  assert.equal(vmCpus({}), 1);
  assert.equal(vmCpus({ "limits.cpu": "3" }), 3);
  assert.equal(vmCpus({ "limits.cpu": "0-1,4" }), 3);
  assert.equal(vmMemoryMiB({}, 2 ** 34), 512);
  assert.equal(vmMemoryMiB({ "limits.memory": "1GiB" }, 2 ** 34), 1024);
  assert.equal(vmMemoryMiB({ "limits.memory": "25%" }, 2 ** 32), 1024);
});

Deno.test("qemuMetrics() reads a live process (this one) and sizes its guest", async () => {
  const m = await qemuMetrics(new Runner(), Deno.pid, { "limits.memory": "256MiB" }, 2 ** 34);
  assert.ok(m.cpu[0].user + m.cpu[0].system > 0);
  assert.ok(m.memoryUsage! > 10 * 2 ** 20);
  assert.equal(m.memoryLimit, 256 * 2 ** 20);
});
