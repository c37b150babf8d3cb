/** A VM's size from its config: vCPUs from `limits.cpu`, guest RAM from `limits.memory`. */
import { parseByteSize, parseCpuSet } from "../../contract/units.ts";

/** Guest RAM when `limits.memory` is unset. */
export const DEFAULT_MEMORY_MIB = 512;

/** vCPUs: a count, or the size of a CPU set; 1 when unset. */
export function vmCpus(config: Record<string, string>): number {
  const cpu = config["limits.cpu"];
  if (!cpu) return 1;
  if (/^\d+$/.test(cpu)) return Math.max(1, Number(cpu));
  return Math.max(1, parseCpuSet(cpu)?.length ?? 1);
}

/** Guest RAM in MiB: bytes, or a percentage of the host's memory. */
export function vmMemoryMiB(config: Record<string, string>, hostBytes: number): number {
  const mem = config["limits.memory"];
  if (!mem) return DEFAULT_MEMORY_MIB;
  if (mem.endsWith("%")) return Math.floor((hostBytes * Number(mem.slice(0, -1))) / 100 / 2 ** 20);
  return Math.floor((parseByteSize(mem) ?? DEFAULT_MEMORY_MIB * 2 ** 20) / 2 ** 20);
}
