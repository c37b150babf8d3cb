import assert from "node:assert/strict";
import { mergeMetrics, withHost } from "./metrics.ts";

Deno.test("withHost() puts the host label first, escaped, and drops a host's own host label", () => {
  assert.equal(withHost('a_total{x="1"} 5', "edge-1"), 'a_total{host="edge-1",x="1"} 5');
  assert.equal(withHost("up 1", 'we"ird'), 'up{host="we\\"ird"} 1');
  assert.equal(withHost('a{host="x"} 1', "edge-1"), undefined);
  assert.equal(withHost("not a sample", "h"), undefined);
});

Deno.test("mergeMetrics() groups each family's samples from every host under one HELP and TYPE", () => {
  const text = (n: number) =>
    [
      "# HELP incus_cpu_seconds_total CPU time",
      "# TYPE incus_cpu_seconds_total counter",
      `incus_cpu_seconds_total{name="c",cpu="0"} ${n}`,
      "# HELP incus_memory_MemTotal_bytes Memory",
      "# TYPE incus_memory_MemTotal_bytes gauge",
      `incus_memory_MemTotal_bytes{name="c"} ${n * 10}`,
      "",
    ].join("\n");
  const merged = mergeMetrics([{ host: "a", text: text(1) }, { host: "b", text: text(2) }]);
  assert.equal(
    merged,
    [
      "# HELP incus_cpu_seconds_total CPU time",
      "# TYPE incus_cpu_seconds_total counter",
      'incus_cpu_seconds_total{host="a",name="c",cpu="0"} 1',
      'incus_cpu_seconds_total{host="b",name="c",cpu="0"} 2',
      "# HELP incus_memory_MemTotal_bytes Memory",
      "# TYPE incus_memory_MemTotal_bytes gauge",
      'incus_memory_MemTotal_bytes{host="a",name="c"} 10',
      'incus_memory_MemTotal_bytes{host="b",name="c"} 20',
      "",
    ].join("\n"),
  );
  assert.equal(mergeMetrics([]), "");
});
