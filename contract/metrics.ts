/**
 * Metrics as Incus serves them at `GET /1.0/metrics`: the names, help texts and types of the
 * metrics outpost provides, and their rendering in the Prometheus text exposition format
 * (version 0.0.4).
 */

/** The help text of each metric outpost serves, by its Incus name, in Incus's order. */
export const METRICS = {
  incus_cpu_seconds_total: "The total number of CPU time used in seconds.",
  incus_cpu_effective_total: "The total number of effective CPUs.",
  incus_disk_read_bytes_total: "The total number of bytes read.",
  incus_disk_reads_completed_total: "The total number of completed reads.",
  incus_disk_written_bytes_total: "The total number of bytes written.",
  incus_disk_writes_completed_total: "The total number of completed writes.",
  incus_filesystem_avail_bytes: "The number of available space in bytes.",
  incus_filesystem_free_bytes: "The number of free space in bytes.",
  incus_filesystem_size_bytes: "The size of the filesystem in bytes.",
  incus_memory_Active_anon_bytes: "The amount of anonymous memory on active LRU list.",
  incus_memory_Active_file_bytes: "The amount of file-backed memory on active LRU list.",
  incus_memory_Cached_bytes: "The amount of cached memory.",
  incus_memory_Dirty_bytes: "The amount of memory waiting to get written back to the disk.",
  incus_memory_Inactive_anon_bytes: "The amount of anonymous memory on inactive LRU list.",
  incus_memory_Inactive_file_bytes: "The amount of file-backed memory on inactive LRU list.",
  incus_memory_Mapped_bytes: "The amount of mapped memory.",
  incus_memory_MemAvailable_bytes: "The amount of available memory.",
  incus_memory_MemFree_bytes: "The amount of free memory.",
  incus_memory_MemTotal_bytes: "The amount of used memory.",
  incus_memory_RSS_bytes: "The amount of anonymous and swap cache memory.",
  incus_memory_Shmem_bytes: "The amount of cached filesystem data that is swap-backed.",
  incus_memory_Swap_bytes: "The amount of used swap memory.",
  incus_memory_Unevictable_bytes: "The amount of unevictable memory.",
  incus_memory_Writeback_bytes: "The amount of memory queued for syncing to disk.",
  incus_memory_OOM_kills_total: "The number of out of memory kills.",
  incus_network_receive_bytes_total: "The amount of received bytes on a given interface.",
  incus_network_receive_drop_total: "The amount of received dropped bytes on a given interface.",
  incus_network_receive_errs_total: "The amount of received errors on a given interface.",
  incus_network_receive_packets_total: "The amount of received packets on a given interface.",
  incus_network_transmit_bytes_total: "The amount of transmitted bytes on a given interface.",
  incus_network_transmit_drop_total:
    "The amount of transmitted dropped bytes on a given interface.",
  incus_network_transmit_errs_total: "The amount of transmitted errors on a given interface.",
  incus_network_transmit_packets_total: "The amount of transmitted packets on a given interface.",
  incus_operations_total: "The number of running operations",
  incus_procs_total: "The number of running processes.",
  incus_uptime_seconds: "The daemon uptime in seconds.",
} as const;

export type MetricName = keyof typeof METRICS;

/** The gauges whose names end in `_total` (their values can go down). */
const TOTAL_GAUGES: ReadonlySet<MetricName> = new Set([
  "incus_cpu_effective_total",
  "incus_procs_total",
]);

/** A metric's type as Incus gives it: `_total` and `_seconds` count up, the rest are gauges. */
export function metricType(name: MetricName): "counter" | "gauge" {
  return !TOTAL_GAUGES.has(name) && /_(total|seconds)$/.test(name) ? "counter" : "gauge";
}

/** One sample: a metric's value for one set of labels. */
export interface MetricSample {
  name: MetricName;
  labels: Readonly<Record<string, string>>;
  value: number;
}

/** The Content-Type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4";

/** A label value as the exposition format writes it: backslash, double quote and newline escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

/** A sample value: integers and decimals as JavaScript prints them, and NaN, +Inf, -Inf. */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/**
 * The exposition text of `samples`: each metric that has samples once, in `METRICS` order, with
 * its HELP and TYPE lines before its samples; labels sorted by name.
 */
export function renderPrometheus(samples: readonly MetricSample[]): string {
  const byName = new Map<MetricName, MetricSample[]>();
  for (const s of samples) {
    const list = byName.get(s.name);
    if (list) list.push(s);
    else byName.set(s.name, [s]);
  }
  const lines: string[] = [];
  for (const name of Object.keys(METRICS) as MetricName[]) {
    const list = byName.get(name);
    if (!list) continue;
    lines.push(`# HELP ${name} ${METRICS[name]}`, `# TYPE ${name} ${metricType(name)}`);
    for (const s of list) {
      const labels = Object.keys(s.labels).sort()
        .map((k) => `${k}="${escapeLabelValue(s.labels[k])}"`).join(",");
      lines.push(`${name}${labels ? `{${labels}}` : ""} ${formatValue(s.value)}`);
    }
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}
