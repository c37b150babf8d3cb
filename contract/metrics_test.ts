import assert from "node:assert/strict";
import { escapeLabelValue, METRICS, metricType, renderPrometheus } from "./metrics.ts";

Deno.test("escapeLabelValue() escapes backslash, double quote and newline, and nothing else", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue("plain-name_1 é\t"), "plain-name_1 é\t");
  assert.equal(escapeLabelValue("\\n"), "\\\\n");
});

Deno.test("renderPrometheus() writes HELP and TYPE once before a metric's samples, labels sorted", () => {
  const text = renderPrometheus([
    { name: "incus_procs_total", labels: { type: "container", name: "c1" }, value: 3 },
    {
      name: "incus_cpu_seconds_total",
      labels: { name: "c1", mode: "system", cpu: "0" },
      value: 1.5,
    },
    { name: "incus_procs_total", labels: { name: 'we"ird\n', type: "container" }, value: 1 },
    { name: "incus_uptime_seconds", labels: {}, value: 12.25 },
  ]);
  assert.equal(
    text,
    [
      "# HELP incus_cpu_seconds_total The total number of CPU time used in seconds.",
      "# TYPE incus_cpu_seconds_total counter",
      'incus_cpu_seconds_total{cpu="0",mode="system",name="c1"} 1.5',
      "# HELP incus_procs_total The number of running processes.",
      "# TYPE incus_procs_total gauge",
      'incus_procs_total{name="c1",type="container"} 3',
      'incus_procs_total{name="we\\"ird\\n",type="container"} 1',
      "# HELP incus_uptime_seconds The daemon uptime in seconds.",
      "# TYPE incus_uptime_seconds counter",
      "incus_uptime_seconds 12.25",
      "",
    ].join("\n"),
  );
});

Deno.test("renderPrometheus() writes NaN and infinities as the format spells them, nothing for no samples", () => {
  const text = renderPrometheus([
    { name: "incus_memory_MemFree_bytes", labels: {}, value: NaN },
    { name: "incus_memory_MemFree_bytes", labels: {}, value: Infinity },
    { name: "incus_memory_MemFree_bytes", labels: {}, value: -Infinity },
  ]);
  assert.deepEqual(text.trim().split("\n").slice(2), [
    "incus_memory_MemFree_bytes NaN",
    "incus_memory_MemFree_bytes +Inf",
    "incus_memory_MemFree_bytes -Inf",
  ]);
  assert.equal(renderPrometheus([]), "");
});

Deno.test("metricType() follows Incus: _total and _seconds count up, bytes and procs are gauges", () => {
  assert.equal(metricType("incus_cpu_seconds_total"), "counter");
  assert.equal(metricType("incus_uptime_seconds"), "counter");
  assert.equal(metricType("incus_memory_OOM_kills_total"), "counter");
  assert.equal(metricType("incus_memory_RSS_bytes"), "gauge");
  assert.equal(metricType("incus_procs_total"), "gauge");
  assert.equal(metricType("incus_cpu_effective_total"), "gauge");
  for (const name of Object.keys(METRICS)) assert.match(name, /^incus_[a-zA-Z_]+$/);
});
