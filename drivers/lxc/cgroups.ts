/**
 * cgroup v1 (legacy/hybrid) and v2 (unified) support: which hierarchy holds each controller,
 * the LXC keys for limits, and usage counters read straight from cgroupfs.
 */
import { availableParallelism, totalmem } from "node:os";
import { join } from "node:path";
import { parseByteSize, parseCpuSet } from "../../contract/units.ts";
import { readHostFile, readHostFiles } from "../hostfs.ts";
import type { Runner } from "../runner.ts";

export type Controller =
  | "memory"
  | "pids"
  | "cpuset"
  | "cpuacct"
  | "cpu"
  | "freezer"
  | "devices"
  | "blkio";

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
        const known = ["memory", "pids", "cpuset", "cpuacct", "cpu", "freezer", "devices", "blkio"];
        if (known.includes(opt)) {
          layout.v1[opt as Controller] = mount;
        }
      }
    }
  }
  return layout;
}

let cached: Promise<CgroupLayout> | undefined;

/** The host's cgroup layout, read once. */
export function hostLayout(runner: Runner): Promise<CgroupLayout> {
  cached ??= (async () => {
    const mountinfo = await readHostFile(runner, "/proc/self/mountinfo") ?? "";
    const v2mount = /^\S+ \S+ \S+ \S+ (\S+) .* - cgroup2 /m.exec(mountinfo)?.[1];
    const controllers = v2mount
      ? await readHostFile(runner, join(v2mount, "cgroup.controllers"))
      : undefined;
    return parseLayout(mountinfo, () => {
      if (controllers === undefined) throw new Error("no cgroup.controllers");
      return controllers;
    });
  })();
  return cached;
}

/** Which version serves a controller: v1 wins where mounted (hybrid hosts), else v2. */
export function versionOf(layout: CgroupLayout, c: Controller): 1 | 2 | undefined {
  if (layout.v1[c]) return 1;
  const v2name = c === "cpuacct" ? "cpu" : c === "blkio" ? "io" : c;
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
    if (/^[1-9]\d*$/.test(cpu)) {
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

/** Paths of a process's cgroups, per controller (v1) and unified (v2), from /proc/PID/cgroup. */
export function parseProcCgroup(text: string): { v1: Map<string, string>; v2?: string } {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.trim().split("\n")) {
    const [, ctrls, path] = line.split(":");
    if (path === undefined) continue;
    if (ctrls === "") v2 = path;
    else for (const c of ctrls.split(",")) v1.set(c, path);
  }
  return { v1, v2 };
}

/** The path of a cgroup file of the process whose cgroups are `paths`, for either version. */
export function cgroupFile(
  layout: CgroupLayout,
  paths: { v1: Map<string, string>; v2?: string },
  c: Controller,
  v1name: string,
  v2name: string,
): string | undefined {
  const v = versionOf(layout, c);
  if (v === 1) {
    const p = paths.v1.get(c);
    return p === undefined || v1name === "" ? undefined : join(layout.v1[c]!, p, v1name);
  }
  if (v === 2 && paths.v2 !== undefined && v2name !== "") {
    return join(layout.v2!.mount, paths.v2, v2name);
  }
  return undefined;
}

export interface Usage {
  memory: number;
  memoryPeak: number;
  swap: number;
  cpuNs: number;
  processes: number;
}

const num = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
};

/** Usage counters of the cgroup holding `pid` (a container's init), in two host reads. */
export async function readUsage(runner: Runner, pid: number): Promise<Usage> {
  const layout = await hostLayout(runner);
  const paths = parseProcCgroup(await readHostFile(runner, `/proc/${pid}/cgroup`) ?? "");
  const files = {
    memory: cgroupFile(layout, paths, "memory", "memory.usage_in_bytes", "memory.current"),
    peak: cgroupFile(layout, paths, "memory", "memory.max_usage_in_bytes", "memory.peak"),
    swap: cgroupFile(layout, paths, "memory", "memory.memsw.usage_in_bytes", "memory.swap.current"),
    cpuacct: cgroupFile(layout, paths, "cpuacct", "cpuacct.usage", ""),
    cpustat: cgroupFile(layout, paths, "cpu", "", "cpu.stat"),
    pids: cgroupFile(layout, paths, "pids", "pids.current", "pids.current"),
  };
  const keys = Object.keys(files) as (keyof typeof files)[];
  const wanted = keys.filter((k) => files[k] !== undefined);
  const texts = await readHostFiles(runner, wanted.map((k) => files[k]!));
  const read = (k: keyof typeof files) => {
    const i = wanted.indexOf(k);
    return i < 0 ? undefined : texts[i];
  };
  const memory = num(read("memory")) ?? 0;
  let swap = num(read("swap")) ?? 0;
  // v1 reports memory+swap together.
  if (versionOf(layout, "memory") === 1 && swap > 0) swap = Math.max(0, swap - memory);
  const usec = /^usage_usec (\d+)/m.exec(read("cpustat") ?? "")?.[1];
  return {
    memory,
    memoryPeak: num(read("peak")) ?? memory,
    swap,
    cpuNs: num(read("cpuacct")) ?? (usec ? Number(usec) * 1000 : 0),
    processes: num(read("pids")) ?? 0,
  };
}

/** The current value of one cgroup file of `pid`'s cgroup (for `state` and tests). */
export async function readCgroupFile(
  runner: Runner,
  pid: number,
  c: Controller,
  v1name: string,
  v2name = v1name,
): Promise<string | undefined> {
  const layout = await hostLayout(runner);
  const paths = parseProcCgroup(await readHostFile(runner, `/proc/${pid}/cgroup`) ?? "");
  const file = cgroupFile(layout, paths, c, v1name, v2name);
  return file === undefined ? undefined : (await readHostFile(runner, file))?.trim();
}

/**
 * Whether a process's cgroups (`parseProcCgroup`) are inside container `name`'s payload cgroup:
 * the top-level `lxc.payload.NAME` LXC makes for it, or a cgroup below it (an init that moved
 * itself, as systemd does). A container that makes a cgroup named after another container inside
 * its own tree stays in its own payload: only the top level counts.
 */
export function inPayloadCgroup(
  paths: { v1: Map<string, string>; v2?: string },
  name: string,
): boolean {
  const payload = `lxc.payload.${name}`;
  return [...paths.v1.values(), paths.v2].some((p) => p?.split("/")[1] === payload);
}

/**
 * A container's init as the kernel sees it, read without a process: whether `pid` still runs in
 * container `name`'s payload cgroup (LXC's `lxc.payload.NAME`), and whether that cgroup is
 * frozen. A pid that died, or that the kernel gave to another process, is `undefined`.
 */
export async function payloadInit(
  runner: Runner,
  name: string,
  pid: number,
): Promise<{ frozen: boolean } | undefined> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const paths = parseProcCgroup(await readHostFile(runner, `/proc/${pid}/cgroup`) ?? "");
  if (!inPayloadCgroup(paths, name)) return undefined;
  const layout = await hostLayout(runner);
  // v2 freezes without a controller: every cgroup has cgroup.events.
  const file = layout.v1.freezer
    ? cgroupFile(layout, paths, "freezer", "freezer.state", "")
    : layout.v2 && paths.v2 !== undefined
    ? join(layout.v2.mount, paths.v2, "cgroup.events")
    : undefined;
  const text = file ? await readHostFile(runner, file) ?? "" : "";
  return { frozen: /^(FROZEN|FREEZING)\s*$|^frozen 1$/m.test(text) };
}
