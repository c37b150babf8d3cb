/**
 * cgroup v1 (legacy/hybrid) and v2 (unified) support: which hierarchy holds each controller,
 * the LXC keys for limits, and usage counters read straight from cgroupfs.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { parseByteSize, parseCpuSet } from "../../agent/units.ts";

export type Controller = "memory" | "pids" | "cpuset" | "cpuacct" | "cpu" | "freezer" | "devices";

export interface CgroupLayout {
  /** Mount point of each v1 controller. */
  v1: Partial<Record<Controller, string>>;
  /** Mount point of the unified hierarchy, and the controllers enabled there. */
  v2?: { mount: string; controllers: Set<string> };
}

/** Parses /proc/self/mountinfo text into the cgroup layout. */
export function parseLayout(
  mountinfo: string,
  readControllers: (mount: string) => string,
): CgroupLayout {
  const layout: CgroupLayout = { v1: {} };
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const mount = left.split(" ")[4];
    const [fstype, , options = ""] = right.split(" ");
    if (fstype === "cgroup2") {
      let controllers = "";
      try {
        controllers = readControllers(mount);
      } catch { /* no controllers file: none enabled */ }
      layout.v2 = { mount, controllers: new Set(controllers.trim().split(/\s+/).filter(Boolean)) };
    } else if (fstype === "cgroup") {
      for (const opt of options.split(",")) {
        if (["memory", "pids", "cpuset", "cpuacct", "cpu", "freezer", "devices"].includes(opt)) {
          layout.v1[opt as Controller] = mount;
        }
      }
    }
  }
  return layout;
}

let cached: CgroupLayout | undefined;
export function hostLayout(): CgroupLayout {
  cached ??= parseLayout(
    readFileSync("/proc/self/mountinfo", "utf8"),
    (m) => readFileSync(join(m, "cgroup.controllers"), "utf8"),
  );
  return cached;
}

/** Which version serves a controller: v1 wins where mounted (hybrid hosts), else v2. */
export function versionOf(layout: CgroupLayout, c: Controller): 1 | 2 | undefined {
  if (layout.v1[c]) return 1;
  const v2name = c === "cpuacct" ? "cpu" : c;
  if (layout.v2?.controllers.has(v2name)) return 2;
  return undefined;
}

export interface Limits {
  memoryBytes?: number;
  pids?: number;
  cpuset?: string;
}

/** The limits an instance config asks for, resolved against the host. */
export function limitsFromConfig(
  config: Record<string, string>,
  host = { cpus: availableParallelism(), memory: totalmem() },
): Limits {
  const limits: Limits = {};
  const mem = config["limits.memory"];
  if (mem) {
    limits.memoryBytes = mem.endsWith("%")
      ? Math.floor(host.memory * Number(mem.slice(0, -1)) / 100)
      : parseByteSize(mem);
  }
  const procs = config["limits.processes"];
  if (procs) limits.pids = Number(procs);
  const cpu = config["limits.cpu"];
  if (cpu) {
    if (/^\d+$/.test(cpu)) {
      const n = Math.min(Number(cpu), host.cpus);
      limits.cpuset = n === 1 ? "0" : `0-${n - 1}`;
    } else {
      const ids = parseCpuSet(cpu) ?? [];
      limits.cpuset = ids.filter((i) => i < host.cpus).join(",") || "0";
    }
  }
  return limits;
}

/** A cgroup file key and value, for either version. `undefined` value resets the limit. */
export function limitSettings(
  layout: CgroupLayout,
  limits: Limits,
  hostCpus = availableParallelism(),
): { version: 1 | 2; key: string; value: string }[] {
  const out: { version: 1 | 2; key: string; value: string }[] = [];
  const mv = versionOf(layout, "memory");
  if (mv) {
    out.push({
      version: mv,
      key: mv === 1 ? "memory.limit_in_bytes" : "memory.max",
      value: limits.memoryBytes !== undefined
        ? String(limits.memoryBytes)
        : mv === 1
        ? "-1"
        : "max",
    });
  }
  const pv = versionOf(layout, "pids");
  if (pv) {
    out.push({
      version: pv,
      key: "pids.max",
      value: limits.pids !== undefined ? String(limits.pids) : "max",
    });
  }
  const cv = versionOf(layout, "cpuset");
  if (cv) {
    out.push({
      version: cv,
      key: "cpuset.cpus",
      value: limits.cpuset ?? (hostCpus === 1 ? "0" : `0-${hostCpus - 1}`),
    });
  }
  return out;
}

/** LXC config lines for the limits that are set (unset ones are left to the host default). */
export function limitConfigLines(layout: CgroupLayout, limits: Limits): string[] {
  const set = new Set<string>();
  if (limits.memoryBytes !== undefined) set.add("memory");
  if (limits.pids !== undefined) set.add("pids");
  if (limits.cpuset !== undefined) set.add("cpuset");
  return limitSettings(layout, limits)
    .filter((s) => set.has(s.key.split(".")[0]))
    .map((s) => `lxc.${s.version === 1 ? "cgroup" : "cgroup2"}.${s.key} = ${s.value}`);
}

/** Paths of a process's cgroups, per controller (v1) and unified (v2). */
function cgroupPaths(pid: number): { v1: Map<string, string>; v2?: string } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n")) {
    const [, ctrls, path] = line.split(":");
    if (ctrls === "") v2 = path;
    else for (const c of ctrls.split(",")) v1.set(c, path);
  }
  return { v1, v2 };
}

function readNumber(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

function readKeyed(path: string, key: string): number | undefined {
  try {
    const line = readFileSync(path, "utf8").split("\n").find((l) => l.startsWith(`${key} `));
    return line ? Number(line.split(" ")[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface Usage {
  memory: number;
  memoryPeak: number;
  swap: number;
  cpuNs: number;
  processes: number;
}

/** Usage counters of the cgroup holding `pid` (a container's init). */
export function readUsage(pid: number, layout = hostLayout()): Usage {
  const paths = cgroupPaths(pid);
  const file = (c: Controller, v1name: string, v2name: string): string | undefined => {
    const v = versionOf(layout, c);
    if (v === 1) {
      const p = paths.v1.get(c);
      return p === undefined ? undefined : join(layout.v1[c]!, p, v1name);
    }
    if (v === 2 && paths.v2 !== undefined) return join(layout.v2!.mount, paths.v2, v2name);
    return undefined;
  };
  const v = (c: Controller) => versionOf(layout, c);
  const memFile = file("memory", "memory.usage_in_bytes", "memory.current");
  const peakFile = file("memory", "memory.max_usage_in_bytes", "memory.peak");
  const swapFile = file("memory", "memory.memsw.usage_in_bytes", "memory.swap.current");
  const memory = memFile ? readNumber(memFile) ?? 0 : 0;
  let swap = swapFile ? readNumber(swapFile) ?? 0 : 0;
  if (v("memory") === 1 && swap > 0) swap = Math.max(0, swap - memory);
  let cpuNs = 0;
  if (v("cpuacct") === 1) cpuNs = readNumber(file("cpuacct", "cpuacct.usage", "")!) ?? 0;
  else {
    const stat = file("cpu", "", "cpu.stat");
    cpuNs = stat ? (readKeyed(stat, "usage_usec") ?? 0) * 1000 : 0;
  }
  const pidsFile = file("pids", "pids.current", "pids.current");
  return {
    memory,
    memoryPeak: peakFile ? readNumber(peakFile) ?? memory : memory,
    swap,
    cpuNs,
    processes: pidsFile ? readNumber(pidsFile) ?? 0 : 0,
  };
}

/** Current value of a cgroup file of `pid`'s cgroup (for tests and `state`). */
export function readCgroupFile(
  pid: number,
  c: Controller,
  name: string,
  layout = hostLayout(),
): string {
  const paths = cgroupPaths(pid);
  const v = versionOf(layout, c);
  const path = v === 1
    ? join(layout.v1[c]!, paths.v1.get(c) ?? "/", name)
    : join(layout.v2!.mount, paths.v2 ?? "/", name);
  return readFileSync(path, "utf8").trim();
}
