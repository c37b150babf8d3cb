import assert from "node:assert/strict";
import { InvalidState } from "../contract/errors.ts";
import type { Driver, InstanceMetrics, InstanceSpec } from "../drivers/driver.ts";
import { instanceSamples, Metrics, METRICS_CACHE_MS } from "./metrics.ts";

const spec = (name: string): InstanceSpec => ({
  name,
  type: "container",
  architecture: "x86_64",
  config: {},
  devices: {},
});

const SAMPLE: InstanceMetrics = {
  cpu: [{ cpu: "0", user: 2, system: 1 }],
  effectiveCpus: 2,
  memoryStat: { RSS: 4096, Cached: 1000, Bogus: 5 },
  memoryLimit: 10_000,
  memoryUsage: 6000,
  swap: 0,
  oomKills: 0,
  network: { lo: { ...zeroCounters(), bytes_received: 42 } },
  processes: 3,
};

function zeroCounters() {
  return {
    bytes_received: 0,
    bytes_sent: 0,
    packets_received: 0,
    packets_sent: 0,
    errors_received: 0,
    errors_sent: 0,
    packets_dropped_inbound: 0,
    packets_dropped_outbound: 0,
  };
}

/** A driver that only answers metrics: "stopped" instances refuse, the rest get SAMPLE. */
function fakeDriver(calls: string[]): Driver {
  return {
    type: "container",
    info: () => ({ name: "lxc", version: "0", available: true, error: "" }),
    metrics: (inst: InstanceSpec) => {
      calls.push(inst.name);
      if (inst.name.startsWith("stopped")) {
        return Promise.reject(new InvalidState(`Instance "${inst.name}" is not running`));
      }
      return Promise.resolve(SAMPLE);
    },
  } as unknown as Driver;
}

Deno.test("instanceSamples() labels every sample with name, project and type, and Incus's memory sums", () => {
  const samples = instanceSamples("c1", "container", SAMPLE);
  for (const s of samples) {
    assert.equal(s.labels.name, "c1");
    assert.equal(s.labels.project, "default");
    assert.equal(s.labels.type, "container");
  }
  const value = (name: string, extra: Record<string, string> = {}) =>
    samples.find((s) =>
      s.name === name && Object.entries(extra).every(([k, v]) => s.labels[k] === v)
    )?.value;
  assert.equal(value("incus_cpu_seconds_total", { mode: "user", cpu: "0" }), 2);
  assert.equal(value("incus_cpu_seconds_total", { mode: "system", cpu: "0" }), 1);
  assert.equal(value("incus_memory_RSS_bytes"), 4096);
  assert.equal(value("incus_memory_MemTotal_bytes"), 10_000);
  assert.equal(value("incus_memory_MemFree_bytes"), 4000);
  assert.equal(value("incus_memory_MemAvailable_bytes"), 5000);
  assert.equal(value("incus_network_receive_bytes_total", { device: "lo" }), 42);
  assert.equal(value("incus_procs_total"), 3);
  // A memory.stat name Incus has no metric for is left out.
  assert.ok(!samples.some((s) => String(s.name).includes("Bogus")));
});

Deno.test("Metrics.text() gathers running instances once per 8 seconds and adds the daemon's own", async () => {
  const calls: string[] = [];
  let now = 1_000_000;
  const metrics = new Metrics({
    instances: () => [spec("c1"), spec("stopped1"), spec("c2")],
    driver: () => fakeDriver(calls),
    operations: () => 4,
    startedAt: new Date(now - 30_000),
    now: () => now,
  });
  const first = await metrics.text();
  assert.deepEqual(calls.sort(), ["c1", "c2", "stopped1"]);
  assert.match(first, /^incus_procs_total\{name="c1",project="default",type="container"\} 3$/m);
  assert.match(first, /^incus_procs_total\{name="c2",project="default",type="container"\} 3$/m);
  assert.doesNotMatch(first, /stopped1/);
  assert.match(first, /^incus_operations_total 4$/m);
  assert.match(first, /^incus_uptime_seconds 30$/m);

  now += METRICS_CACHE_MS - 1;
  const [a, b] = await Promise.all([metrics.text(), metrics.text()]);
  assert.equal(a, first);
  assert.equal(b, first);
  assert.equal(calls.length, 3, "served from the cache");

  now += 1;
  const later = await metrics.text();
  assert.equal(calls.length, 6, "gathered again once the cache expired");
  assert.match(later, /^incus_uptime_seconds 38$/m);
});
