/**
 * Shared by the hostile crash and concurrency tests: a seeded PRNG, API calls that never throw and
 * time out, and the checks that the store, the disk and LXC itself agree.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { TestDaemon } from "./helpers.ts";

/** A small seeded PRNG (mulberry32): the same seed, the same choices. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Envelope {
  type?: string;
  error?: string;
  error_code?: number;
  status_code?: number;
  metadata?: unknown;
}

export interface Answer {
  /** HTTP status, 0 when there was no answer (see `timedOut` and `error`). */
  status: number;
  body?: Envelope;
  /** The raw body when it was not JSON. */
  text: string;
  headers: Headers;
  ms: number;
  timedOut: boolean;
  /** Set when the request failed without an HTTP answer (connection refused or reset). */
  error?: string;
}

export interface CallOptions {
  body?: unknown;
  raw?: BodyInit;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

const clients = new Map<string, Deno.HttpClient>();

/** One HTTP client per socket, closed by `closeClients()`. */
function clientFor(socket: string): Deno.HttpClient {
  let c = clients.get(socket);
  if (!c) {
    c = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
    clients.set(socket, c);
  }
  return c;
}

export function closeClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

/** One API request that never throws: a timeout or a dropped connection is in the answer. */
export async function call(
  d: TestDaemon,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["Content-Type"] = "application/json";
  }
  const started = performance.now();
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? 30_000);
  try {
    const res = await fetch(`http://outpost${path}`, {
      method,
      headers,
      body,
      client: clientFor(d.socket),
      signal: timeout,
    });
    const text = await res.text();
    let parsed: Envelope | undefined;
    try {
      parsed = JSON.parse(text);
    } catch { /* not JSON: kept as text */ }
    return {
      status: res.status,
      body: parsed,
      text,
      headers: res.headers,
      ms: performance.now() - started,
      timedOut: false,
    };
  } catch (err) {
    return {
      status: 0,
      text: "",
      headers: new Headers(),
      ms: performance.now() - started,
      timedOut: timeout.aborted,
      error: err instanceof Error ? err.message : String(err),
    };
  }
}

export interface Op {
  id: string;
  status: string;
  status_code: number;
  err: string;
  created_at: string;
  description: string;
  metadata: Record<string, unknown> | null;
}

/** Waits for an operation to finish (up to `timeoutMs`); the answer carries it as metadata. */
export async function waitOp(d: TestDaemon, id: string, timeoutMs = 60_000): Promise<Answer> {
  const secs = Math.ceil(timeoutMs / 1000);
  return await call(d, "GET", `/1.0/operations/${id}/wait?timeout=${secs}`, {
    timeoutMs: timeoutMs + 5_000,
  });
}

/** A request that must succeed; an operation it starts is waited for and must succeed too. */
export async function must(
  d: TestDaemon,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<Answer> {
  const a = await call(d, method, path, opts);
  const what = `${method} ${path}`;
  if (a.status === 202) {
    const id = (a.body?.metadata as Op).id;
    const w = await waitOp(d, id);
    const op = w.body?.metadata as Op | undefined;
    if (op?.status_code !== 200) {
      throw new Error(`${what}: operation ended ${op?.status ?? w.status}: ${op?.err ?? w.text}`);
    }
    return w;
  }
  if (a.status !== 200) {
    throw new Error(`${what} answered ${a.status}: ${a.body?.error ?? a.error ?? a.text}`);
  }
  return a;
}

export interface InstanceView {
  name: string;
  status: string;
  config: Record<string, string>;
}

export async function instances(d: TestDaemon): Promise<InstanceView[]> {
  const a = await must(d, "GET", "/1.0/instances?recursion=1");
  return a.body!.metadata as InstanceView[];
}

/** What LXC itself reports for the daemon's lxcpath: name → state (RUNNING, STOPPED, FROZEN). */
export async function lxcLs(d: TestDaemon): Promise<Map<string, string>> {
  const out = await new Deno.Command("lxc-ls", {
    args: ["-P", d.lxcPath, "-f", "-F", "NAME,STATE"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const map = new Map<string, string>();
  const lines = new TextDecoder().decode(out.stdout).split("\n").slice(1);
  for (const line of lines) {
    const [name, state] = line.trim().split(/\s+/);
    if (name) map.set(name, state ?? "");
  }
  return map;
}

/** The container dirs on disk. */
export function diskNames(d: TestDaemon): string[] {
  if (!existsSync(d.lxcPath)) return [];
  return readdirSync(d.lxcPath).filter((n) => statSync(join(d.lxcPath, n)).isDirectory());
}

const TEMP = /^\.(unpack|restore-.*|snapshot-.*)$/;

/** Temp files and dirs an interrupted verb may have left, as paths relative to the state dir. */
export function tempLeftovers(d: TestDaemon): string[] {
  const found: string[] = [];
  const images = join(d.dir, "images");
  if (existsSync(images)) {
    for (const e of readdirSync(images)) {
      if (e.startsWith(".upload-")) found.push(`images/${e}`);
    }
  }
  for (const name of diskNames(d)) {
    for (const e of readdirSync(join(d.lxcPath, name))) {
      if (TEMP.test(e)) found.push(`containers/${name}/${e}`);
    }
  }
  return found;
}

const STATE: Record<string, string> = {
  Running: "RUNNING",
  Stopped: "STOPPED",
  Frozen: "FROZEN",
};

/**
 * Everything that must hold between the store, the disk and LXC, as a list of problems (empty when
 * all is well): the same names everywhere, every record's storage present, the API's status the one
 * LXC reports, no container FROZEN except those in `frozenOk`, no temp file, no image file or
 * snapshot storage without a record and no record without its file.
 */
export async function consistencyProblems(
  d: TestDaemon,
  frozenOk: ReadonlySet<string> = new Set(),
): Promise<string[]> {
  const problems: string[] = [];
  const list = await instances(d);
  const records = new Set(list.map((i) => i.name));
  const disk = new Set(diskNames(d));
  const lxc = await lxcLs(d);
  for (const n of disk) {
    if (!records.has(n)) problems.push(`orphan storage: containers/${n} has no instance record`);
  }
  for (const i of list) {
    for (const part of ["", "rootfs", "config"]) {
      if (!existsSync(join(d.lxcPath, i.name, part))) {
        problems.push(`instance ${i.name}: its storage containers/${i.name}/${part} is missing`);
      }
    }
    const seen = lxc.get(i.name);
    if (seen === undefined) {
      problems.push(`instance ${i.name}: recorded but not listed by lxc-ls`);
    } else if (STATE[i.status] !== seen) {
      problems.push(`instance ${i.name}: the API says ${i.status}, LXC says ${seen}`);
    }
    if (seen === "FROZEN" && !frozenOk.has(i.name)) {
      problems.push(`instance ${i.name}: left FROZEN though nobody froze it`);
    }
    const snaps = await call(d, "GET", `/1.0/instances/${i.name}/snapshots`);
    if (snaps.status === 200) {
      const recorded = new Set(
        (snaps.body!.metadata as string[]).map((u) => decodeURIComponent(u.split("/").pop()!)),
      );
      const dir = join(d.lxcPath, i.name, "snapshots");
      const stored = new Set(existsSync(dir) ? readdirSync(dir) : []);
      for (const s of stored) {
        if (!recorded.has(s)) {
          problems.push(`instance ${i.name}: snapshot storage "${s}" has no record`);
        }
      }
      for (const s of recorded) {
        if (!stored.has(s)) problems.push(`instance ${i.name}: snapshot "${s}" has no storage`);
      }
    }
  }
  for (const n of lxc.keys()) {
    if (!records.has(n)) problems.push(`lxc-ls lists "${n}", which has no instance record`);
  }
  for (const t of tempLeftovers(d)) problems.push(`temp file left: ${t}`);
  const images = await must(d, "GET", "/1.0/images");
  const fps = new Set((images.body!.metadata as string[]).map((u) => u.split("/").pop()!));
  const imageDir = join(d.dir, "images");
  const files = new Set(existsSync(imageDir) ? readdirSync(imageDir) : []);
  for (const f of files) {
    if (f.startsWith(".upload-")) continue; // reported as a temp file
    if (!fps.has(f.replace(/\.d$/, ""))) problems.push(`image file images/${f} has no record`);
  }
  for (const fp of fps) {
    if (!files.has(fp)) {
      problems.push(`image ${fp.slice(0, 12)} is recorded but its file is missing`);
    }
  }
  return problems;
}

/** `lxc-attach` processes working on the daemon's containers (a hung exec leaves them). */
export function lxcAttachProcesses(d: TestDaemon, name?: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let cmd: string;
    try {
      cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").join(" ");
    } catch {
      continue;
    }
    if (!cmd.includes("lxc-attach") || !cmd.includes(d.lxcPath)) continue;
    if (name !== undefined && !cmd.split(" ").includes(name)) continue;
    found.push(`${pid}: ${cmd.trim()}`);
  }
  return found;
}

/** Lines of the daemon's log that show an error escaping every handler. */
export async function uncaughtErrors(d: TestDaemon): Promise<string[]> {
  return (await d.log()).split("\n").filter((l) =>
    /error: (unhandled rejection|uncaught)/.test(l) || /^error: Uncaught/.test(l)
  );
}

/** The pids of a process's descendants, with their command names. */
export function descendants(pid: number): { pid: number; comm: string }[] {
  const children = new Map<number, { pid: number; comm: string }[]>();
  for (const p of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${p}/stat`);
    } catch {
      continue;
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const ppid = Number(stat.slice(close + 2).split(" ")[1]);
    const list = children.get(ppid) ?? [];
    list.push({ pid: Number(p), comm });
    children.set(ppid, list);
  }
  const out: { pid: number; comm: string }[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c.pid);
    }
  };
  walk(pid);
  return out;
}

/** Waits until none of `pids` is alive (or `ms` pass); answers those still alive. */
export async function waitGone(pids: number[], ms = 20_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  let alive = pids;
  while (true) {
    alive = alive.filter((p) => {
      try {
        const stat = Deno.readTextFileSync(`/proc/${p}/stat`);
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
      } catch {
        return false;
      }
    });
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await sleep(50);
  }
}

/**
 * Kills every container LXC runs on the daemon's lxcpath, including one whose directory is gone
 * (TestDaemon.cleanup only stops those it finds on disk). For `finally` blocks, before cleanup.
 */
export async function stopStrays(d: TestDaemon): Promise<void> {
  const names = new Set<string>();
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
      const m = /^\[lxc monitor\] (\S+) (\S+)$/.exec(cmd);
      if (m && m[1] === d.lxcPath) names.add(m[2]);
    } catch { /* gone */ }
  }
  for (const name of names) {
    await new Deno.Command("lxc-stop", {
      args: ["-P", d.lxcPath, "-n", name, "-k"],
      stdout: "null",
      stderr: "null",
    }).output();
  }
}
