/**
 * `GET /1.0/metrics`: every running instance's metrics, gathered concurrently from its driver,
 * plus the daemon's own, rendered once and kept for 8 seconds (as Incus does), so scrapers that
 * poll often cost one gathering per interval.
 */
import {
  type MetricName,
  METRICS,
  type MetricSample,
  renderPrometheus,
} from "../contract/metrics.ts";
import type { InstanceType } from "../contract/schemas.ts";
import { InvalidState } from "../contract/errors.ts";
import type { Driver, InstanceMetrics, InstanceSpec } from "../drivers/driver.ts";

/** How long one gathered text is served again. */
export const METRICS_CACHE_MS = 8_000;

export interface MetricsSources {
  /** Every instance on record (the stopped ones are skipped). */
  instances: () => readonly InstanceSpec[];
  driver: (type: InstanceType) => Driver | undefined;
  /** How many operations the daemon knows of. */
  operations: () => number;
  startedAt: Date;
  log?: (msg: string) => void;
  now?: () => number;
}

/** The samples of one instance's raw numbers, labelled as Incus labels them. */
export function instanceSamples(
  name: string,
  type: InstanceType,
  m: InstanceMetrics,
): MetricSample[] {
  const base = { name, project: "default", type };
  const out: MetricSample[] = [];
  const add = (metric: MetricName, value: number | undefined, labels = {}) => {
    if (value !== undefined && Number.isFinite(value)) {
      out.push({ name: metric, labels: { ...base, ...labels }, value });
    }
  };
  for (const c of m.cpu) {
    add("incus_cpu_seconds_total", c.system, { cpu: c.cpu, mode: "system" });
    add("incus_cpu_seconds_total", c.user, { cpu: c.cpu, mode: "user" });
  }
  add("incus_cpu_effective_total", m.effectiveCpus);
  for (const [key, value] of Object.entries(m.memoryStat)) {
    const metric = `incus_memory_${key}_bytes`;
    if (metric in METRICS) add(metric as MetricName, value);
  }
  if (m.memoryLimit !== undefined && m.memoryUsage !== undefined) {
    const cached = m.memoryStat.Cached ?? 0;
    add("incus_memory_MemTotal_bytes", m.memoryLimit);
    add("incus_memory_MemAvailable_bytes", m.memoryLimit - m.memoryUsage + cached);
    add("incus_memory_MemFree_bytes", m.memoryLimit - m.memoryUsage);
  }
  add("incus_memory_Swap_bytes", m.swap);
  add("incus_memory_OOM_kills_total", m.oomKills);
  for (const [device, c] of Object.entries(m.network)) {
    const labels = { device };
    add("incus_network_receive_bytes_total", c.bytes_received, labels);
    add("incus_network_receive_drop_total", c.packets_dropped_inbound, labels);
    add("incus_network_receive_errs_total", c.errors_received, labels);
    add("incus_network_receive_packets_total", c.packets_received, labels);
    add("incus_network_transmit_bytes_total", c.bytes_sent, labels);
    add("incus_network_transmit_drop_total", c.packets_dropped_outbound, labels);
    add("incus_network_transmit_errs_total", c.errors_sent, labels);
    add("incus_network_transmit_packets_total", c.packets_sent, labels);
  }
  for (const [device, d] of Object.entries(m.disk ?? {})) {
    const labels = { device };
    add("incus_disk_read_bytes_total", d.readBytes, labels);
    add("incus_disk_reads_completed_total", d.reads, labels);
    add("incus_disk_written_bytes_total", d.writtenBytes, labels);
    add("incus_disk_writes_completed_total", d.writes, labels);
  }
  for (const [device, f] of Object.entries(m.filesystem ?? {})) {
    const labels = { device, fstype: f.fstype, mountpoint: f.mountpoint };
    add("incus_filesystem_avail_bytes", f.avail, labels);
    add("incus_filesystem_free_bytes", f.free, labels);
    add("incus_filesystem_size_bytes", f.size, labels);
  }
  add("incus_procs_total", m.processes);
  return out;
}

export class Metrics {
  #cached?: { at: number; text: Promise<string> };
  readonly #now: () => number;

  constructor(private sources: MetricsSources) {
    this.#now = sources.now ?? Date.now;
  }

  /** The exposition text: gathered at most once per `METRICS_CACHE_MS`, shared by callers. */
  text(): Promise<string> {
    const now = this.#now();
    if (!this.#cached || now - this.#cached.at >= METRICS_CACHE_MS) {
      const text = this.#gather();
      // A failed gathering is not kept.
      text.catch(() => this.#cached?.text === text && (this.#cached = undefined));
      this.#cached = { at: now, text };
    }
    return this.#cached.text;
  }

  async #gather(): Promise<string> {
    const per = await Promise.all(
      this.sources.instances().map(async (inst) => {
        const d = this.sources.driver(inst.type);
        if (!d?.metrics || !d.info().available) return [];
        try {
          return instanceSamples(inst.name, inst.type, await d.metrics(inst));
        } catch (err) {
          // Stopped instances have no metrics; anything else is worth a line in the log.
          if (!(err instanceof InvalidState)) {
            this.sources.log?.(`Could not read the metrics of "${inst.name}": ${err}`);
          }
          return [];
        }
      }),
    );
    const uptime = (this.#now() - this.sources.startedAt.getTime()) / 1000;
    return renderPrometheus([
      ...per.flat(),
      { name: "incus_operations_total", labels: {}, value: this.sources.operations() },
      { name: "incus_uptime_seconds", labels: {}, value: uptime },
    ]);
  }
}
