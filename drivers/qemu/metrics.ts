/**
 * A running VM's metrics (`GET /1.0/metrics`) as seen from the host: the QEMU process's CPU time
 * (user and system, all vCPUs together as cpu "0") and resident memory, against the guest's RAM.
 * What only the guest knows (its processes, its own memory breakdown) is left out.
 */
import type { InstanceMetrics } from "../driver.ts";
import { readHostFiles } from "../hostfs.ts";
import type { Runner } from "../runner.ts";
import { vmCpus, vmMemoryMiB } from "./sizing.ts";

/** Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** User and system seconds from a `/proc/PID/stat` line (fields 14 and 15). */
export function parseProcStat(text: string): { user: number; system: number } {
  // The command name (field 2) may hold spaces and parentheses: fields count from its end.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const user = Number(rest[11]);
  const system = Number(rest[12]);
  if (!Number.isFinite(user) || !Number.isFinite(system)) {
    throw new Error("Unreadable /proc/PID/stat");
  }
  return { user: user / USER_HZ, system: system / USER_HZ };
}

/** Resident memory in bytes from `/proc/PID/status` (`VmRSS:  1234 kB`). */
export function parseVmRss(text: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(text);
  if (!m) throw new Error("Unreadable /proc/PID/status");
  return Number(m[1]) * 1024;
}

export async function qemuMetrics(
  runner: Runner,
  pid: number,
  config: Record<string, string>,
  hostBytes: number,
): Promise<InstanceMetrics> {
  // /proc is read as the daemon reads every host file (Deno's own reads of it need --allow-all).
  const [stat, status] = await readHostFiles(runner, [`/proc/${pid}/stat`, `/proc/${pid}/status`]);
  if (stat === undefined || status === undefined) throw new Error(`Process ${pid} is gone`);
  const { user, system } = parseProcStat(stat);
  const rss = parseVmRss(status);
  return {
    cpu: [{ cpu: "0", user, system }],
    effectiveCpus: vmCpus(config),
    memoryStat: { RSS: rss },
    memoryLimit: vmMemoryMiB(config, hostBytes) * 2 ** 20,
    memoryUsage: rss,
    network: {},
  };
}
