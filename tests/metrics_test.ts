/** End to end: GET /1.0/metrics of a real LXC container, in Incus's Prometheus text. */
import assert from "node:assert/strict";
import { TestDaemon, uniqueName } from "./helpers.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus text exposition line by line, failing on any line that is not a HELP, a TYPE
 * or a `name{labels} value` sample, and on a sample whose metric had no HELP and TYPE before it.
 */
function parseExposition(text: string): Sample[] {
  assert.ok(text.endsWith("\n"), "the text ends with a newline");
  const helped = new Set<string>();
  const typed = new Set<string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (comment) {
      const [, kind, name, rest] = comment;
      if (kind === "HELP") helped.add(name);
      else {
        assert.match(rest, /^(counter|gauge)$/, line);
        assert.ok(helped.has(name), `TYPE before HELP: ${line}`);
        typed.add(name);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, labelText = "", value] = m;
    assert.ok(helped.has(name) && typed.has(name), `no HELP/TYPE before ${line}`);
    const labels: Record<string, string> = {};
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
    while (label.lastIndex < labelText.length) {
      const l = label.exec(labelText);
      assert.ok(l, `bad labels in ${line}`);
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
    }
    assert.match(value, /^(-?[0-9.e+-]+|NaN|[+-]Inf)$/, line);
    samples.push({ name, labels, value: Number(value) });
  }
  return samples;
}

/** Bytes the container's cgroup says it wrote (v1 blkio or v2 io.stat), read here directly. */
async function cgroupWrittenBytes(name: string): Promise<number> {
  const v1 = `/sys/fs/cgroup/blkio/lxc.payload.${name}/blkio.throttle.io_service_bytes_recursive`;
  const v2 = `/sys/fs/cgroup/lxc.payload.${name}/io.stat`;
  const text = await Deno.readTextFile(v1).catch(() => Deno.readTextFile(v2).catch(() => ""));
  let sum = 0;
  for (const m of text.matchAll(/^\d+:\d+ Write (\d+)$/gm)) sum += Number(m[1]);
  for (const m of text.matchAll(/\bwbytes=(\d+)/g)) sum += Number(m[1]);
  return sum;
}

Deno.test("GET /1.0/metrics serves a running container's CPU, memory, processes, lo counters, disk counters equal to its cgroup's, and its root filesystem", async () => {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox("bb");
    const name = uniqueName("metrics");
    await d.ok("launch", "bb", name);
    const dd = await d.cli(
      "exec",
      name,
      "--",
      "dd",
      "if=/dev/zero",
      "of=/dev/null",
      "bs=1M",
      "count=200",
    );
    assert.equal(dd.code, 0, dd.stderr);
    // 4 MiB written through to the disk, which the container's cgroup counts where it can.
    const write = await d.cli(
      "exec",
      name,
      "--",
      "dd",
      "if=/dev/zero",
      "of=/root/blob",
      "bs=1M",
      "count=4",
      "conv=fsync",
    );
    assert.equal(write.code, 0, write.stderr);

    const res = await d.api.fetch("GET", "/1.0/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4");
    const text = await res.text();
    const samples = parseExposition(text);
    const of = (metric: string, labels: Record<string, string> = {}) =>
      samples.filter((s) =>
        s.name === metric && s.labels.name === name && s.labels.project === "default" &&
        s.labels.type === "container" &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      );

    const cpu = of("incus_cpu_seconds_total");
    assert.ok(cpu.length >= 2, text);
    assert.ok(
      cpu.every((s) => s.labels.cpu !== undefined && /^(user|system)$/.test(s.labels.mode)),
    );
    const cpuSeconds = cpu.reduce((sum, s) => sum + s.value, 0);
    assert.ok(cpuSeconds > 0, `cpu seconds ${cpuSeconds}`);
    assert.ok(of("incus_procs_total")[0]?.value >= 1, "incus_procs_total >= 1");
    assert.ok(of("incus_memory_RSS_bytes")[0]?.value > 0, "incus_memory_RSS_bytes > 0");
    assert.ok(of("incus_memory_MemTotal_bytes")[0]?.value > 0, "incus_memory_MemTotal_bytes > 0");
    for (const dir of ["receive", "transmit"]) {
      for (const what of ["bytes", "packets", "errs", "drop"]) {
        const lo = of(`incus_network_${dir}_${what}_total`, { device: "lo" });
        assert.equal(lo.length, 1, `incus_network_${dir}_${what}_total for lo`);
        assert.ok(lo[0].value >= 0);
      }
    }
    // The disk counters are the cgroup's (empty on a cgroup v1 kernel that counts only
    // throttled I/O, as this one may be): what the metrics say is what the cgroup says.
    const written = of("incus_disk_written_bytes_total").reduce((sum, s) => sum + s.value, 0);
    assert.equal(written, await cgroupWrittenBytes(name), text);
    assert.ok(
      of("incus_disk_read_bytes_total").every((s) => /^[A-Za-z0-9._:-]+$/.test(s.labels.device)),
    );
    // The root disk's filesystem is the one holding the rootfs on the host.
    const size = of("incus_filesystem_size_bytes", { device: "root", mountpoint: "/" });
    assert.equal(size.length, 1, text);
    assert.ok(size[0].value > 0 && size[0].labels.fstype !== "");
    const avail = of("incus_filesystem_avail_bytes", { device: "root" })[0].value;
    const free = of("incus_filesystem_free_bytes", { device: "root" })[0].value;
    assert.ok(0 < avail && avail <= free && free <= size[0].value, `${avail} ${free}`);
    const daemon = (metric: string) => samples.find((s) => s.name === metric);
    assert.ok(daemon("incus_uptime_seconds")!.value > 0);
    assert.ok(daemon("incus_operations_total")!.value >= 1, "the launch's operations are known");
  } finally {
    await d.cleanup();
  }
});
