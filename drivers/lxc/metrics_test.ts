import assert from "node:assert/strict";
import { parseCpuacctUsageAll, parseCpuStat, parseKeyValues, parseMemoryStat } from "./metrics.ts";

Deno.test("parseCpuacctUsageAll() gives each cpu's user and system seconds from nanoseconds", () => {
  const text = "cpu user system\n0 1500000000 250000000\n1 0 1000000000\n";
  assert.deepEqual(parseCpuacctUsageAll(text), [
    { cpu: "0", user: 1.5, system: 0.25 },
    { cpu: "1", user: 0, system: 1 },
  ]);
  assert.deepEqual(parseCpuacctUsageAll(""), []);
});

Deno.test("parseCpuStat() gives cgroup v2's user and system microseconds as cpu 0 seconds", () => {
  const text = [
    "usage_usec 3500000",
    "user_usec 2000000",
    "system_usec 1500000",
    "nr_periods 0",
    "",
  ].join("\n");
  assert.deepEqual(parseCpuStat(text), [{ cpu: "0", user: 2, system: 1.5 }]);
  assert.deepEqual(parseCpuStat("usage_usec 1\n"), []);
});

Deno.test("parseMemoryStat() maps v1 keys to Incus's names, the hierarchical total_* winning", () => {
  const text = [
    "cache 100",
    "rss 200",
    "mapped_file 300",
    "shmem 5",
    "active_anon 7",
    "pgfault 999",
    "total_cache 1000",
    "total_rss 2000",
    "total_mapped_file 3000",
    "",
  ].join("\n");
  assert.deepEqual(parseMemoryStat(text, 1), {
    Cached: 1000,
    RSS: 2000,
    Mapped: 3000,
    Shmem: 5,
    Active_anon: 7,
  });
});

Deno.test("parseMemoryStat() maps v2 keys (anon, file, file_mapped...) to Incus's names", () => {
  const text = "anon 4096\nfile 8192\nfile_mapped 12\nfile_dirty 3\nfile_writeback 1\n" +
    "active_file 9\nunevictable 0\nsock 77\n";
  assert.deepEqual(parseMemoryStat(text, 2), {
    RSS: 4096,
    Cached: 8192,
    Mapped: 12,
    Dirty: 3,
    Writeback: 1,
    Active_file: 9,
    Unevictable: 0,
  });
});

Deno.test("parseKeyValues() reads memory.oom_control and memory.events alike", () => {
  assert.equal(parseKeyValues("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n").get("oom_kill"), 4);
  assert.equal(parseKeyValues("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n").get("oom_kill"), 1);
});
