/**
 * A running container's metrics (`GET /1.0/metrics`) from its cgroup files and its network
 * namespace's `/proc/PID/net/dev`, in one batch of host reads: CPU time per cpu, memory.stat,
 * memory use and limit, swap, OOM kills, effective CPUs, processes and interface counters.
 */
import { totalmem } from "node:os";
import { parseCpuSet } from "../../contract/units.ts";
import type { InstanceMetrics } from "../driver.ts";
import { readHostFile, readHostFiles } from "../hostfs.ts";
import type { Runner } from "../runner.ts";
import { cgroupFile, type Controller, hostLayout, parseProcCgroup, versionOf } from "./cgroups.ts";
import { netDevCounters } from "./procnet.ts";
import { devName, parseBlkioV1, parseIoStat } from "./blkio.ts";
import { fsUsage, mountOf } from "../statfs.ts";

/** Per-cpu user and system seconds from cgroup v1's `cpuacct.usage_all` (nanoseconds). */
export function parseCpuacctUsageAll(text: string): InstanceMetrics["cpu"] {
  const out: InstanceMetrics["cpu"] = [];
  for (const line of text.split("\n").slice(1)) {
    const [cpu, user, system] = line.trim().split(/\s+/);
    if (!/^\d+$/.test(cpu ?? "") || user === undefined || system === undefined) continue;
    out.push({ cpu, user: Number(user) / 1e9, system: Number(system) / 1e9 });
  }
  return out;
}

/** `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control) as numbers. */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out.set(k, Number(v));
  }
  return out;
}

/** User and system seconds from cgroup v2's `cpu.stat` (microseconds), as cpu "0" (as Incus). */
export function parseCpuStat(text: string): InstanceMetrics["cpu"] {
  const kv = parseKeyValues(text);
  const user = kv.get("user_usec");
  const system = kv.get("system_usec");
  if (user === undefined || system === undefined) return [];
  return [{ cpu: "0", user: user / 1e6, system: system / 1e6 }];
}

/** memory.stat keys (v1, then v2) → Incus's `incus_memory_<name>_bytes` names. */
const MEMORY_STAT_V1: Record<string, string> = {
  active_anon: "Active_anon",
  active_file: "Active_file",
  inactive_anon: "Inactive_anon",
  inactive_file: "Inactive_file",
  unevictable: "Unevictable",
  writeback: "Writeback",
  dirty: "Dirty",
  mapped_file: "Mapped",
  rss: "RSS",
  shmem: "Shmem",
  cache: "Cached",
};
const MEMORY_STAT_V2: Record<string, string> = {
  active_anon: "Active_anon",
  active_file: "Active_file",
  inactive_anon: "Inactive_anon",
  inactive_file: "Inactive_file",
  unevictable: "Unevictable",
  file_writeback: "Writeback",
  file_dirty: "Dirty",
  file_mapped: "Mapped",
  anon: "RSS",
  shmem: "Shmem",
  file: "Cached",
};

/**
 * memory.stat by Incus's names. On v1 the `total_*` counters (the cgroup and every cgroup below
 * it, where a container's init may have moved its processes) win over the cgroup's own.
 */
export function parseMemoryStat(text: string, version: 1 | 2): Record<string, number> {
  const kv = parseKeyValues(text);
  const names = version === 1 ? MEMORY_STAT_V1 : MEMORY_STAT_V2;
  const out: Record<string, number> = {};
  for (const [key, name] of Object.entries(names)) {
    const v = (version === 1 ? kv.get(`total_${key}`) : undefined) ?? kv.get(key);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

const num = (text: string | undefined): number | undefined => {
  const n = text === undefined || text.trim() === "" ? NaN : Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
};

/** The root disk's filesystem: the one holding the container's rootfs directory on the host. */
async function rootFilesystem(
  runner: Runner,
  rootfs: string,
): Promise<InstanceMetrics["filesystem"]> {
  const usage = fsUsage(rootfs);
  const mount = mountOf(await readHostFile(runner, "/proc/self/mountinfo") ?? "", rootfs);
  if (!usage || !mount) return {};
  return { root: { fstype: mount.fstype, mountpoint: "/", ...usage } };
}

/** The metrics of the container whose init is `pid` and whose rootfs is `rootfs`. */
export async function readMetrics(
  runner: Runner,
  pid: number,
  rootfs: string,
): Promise<InstanceMetrics> {
  const layout = await hostLayout(runner);
  const paths = parseProcCgroup(await readHostFile(runner, `/proc/${pid}/cgroup`) ?? "");
  const file = (c: Controller, v1: string, v2: string) => cgroupFile(layout, paths, c, v1, v2);
  const files = {
    cpuAll: file("cpuacct", "cpuacct.usage_all", ""),
    cpuStat: file("cpu", "", "cpu.stat"),
    cpus: file("cpuset", "cpuset.effective_cpus", "cpuset.cpus.effective"),
    memStat: file("memory", "memory.stat", "memory.stat"),
    memUsage: file("memory", "memory.usage_in_bytes", "memory.current"),
    memLimit: file("memory", "memory.limit_in_bytes", "memory.max"),
    swap: file("memory", "memory.memsw.usage_in_bytes", "memory.swap.current"),
    oom: file("memory", "memory.oom_control", "memory.events"),
    pids: file("pids", "pids.current", "pids.current"),
    netDev: `/proc/${pid}/net/dev`,
    ioBytes: file("blkio", "blkio.throttle.io_service_bytes_recursive", "io.stat"),
    ioOps: file("blkio", "blkio.throttle.io_serviced_recursive", ""),
  };
  const keys = (Object.keys(files) as (keyof typeof files)[]).filter((k) => files[k]);
  const texts = await readHostFiles(runner, keys.map((k) => files[k]!));
  const read = (k: keyof typeof files) => texts[keys.indexOf(k)] ?? undefined;

  const memVersion = versionOf(layout, "memory") ?? 2;
  const usage = num(read("memUsage"));
  const limit = num(read("memLimit"));
  const swapText = num(read("swap"));
  const cpus = parseCpuSet(read("cpus")?.trim() ?? "");
  const io = versionOf(layout, "blkio") === 1
    ? parseBlkioV1(read("ioBytes") ?? "", read("ioOps") ?? "")
    : parseIoStat(read("ioBytes") ?? "");
  const devs = [...io.keys()];
  const names = await readHostFiles(runner, devs.map((d) => `/sys/dev/block/${d}/uevent`));
  const disk = Object.fromEntries(devs.map((d, i) => [devName(names[i]) ?? d, io.get(d)!]));
  return {
    cpu: read("cpuAll") !== undefined
      ? parseCpuacctUsageAll(read("cpuAll")!)
      : parseCpuStat(read("cpuStat") ?? ""),
    effectiveCpus: cpus?.length || undefined,
    memoryStat: parseMemoryStat(read("memStat") ?? "", memVersion),
    // An unlimited cgroup ("max", or v1's huge number) may use the host's memory.
    memoryLimit: Math.min(limit ?? Infinity, totalmem()),
    memoryUsage: usage,
    // v1 counts memory and swap together.
    swap: swapText === undefined
      ? undefined
      : memVersion === 1
      ? Math.max(0, swapText - (usage ?? 0))
      : swapText,
    oomKills: parseKeyValues(read("oom") ?? "").get("oom_kill"),
    network: Object.fromEntries(netDevCounters(read("netDev") ?? "")),
    disk,
    filesystem: await rootFilesystem(runner, rootfs),
    processes: num(read("pids")),
  };
}
