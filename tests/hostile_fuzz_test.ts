/**
 * Hostile suite, fuzz part (issue 7): thousands of malformed requests over every endpoint, sent as
 * raw HTTP/1.1 on the unix socket, against a daemon with a stopped and a running container. None
 * may get a 5xx, hang, crash the daemon, leave a non-envelope error, change state or grow the
 * daemon's memory. The seed is fixed (override with OUTPOST_FUZZ_SEED) and printed;
 * OUTPOST_FUZZ_FAMILIES=body,files runs only some families; OUTPOST_FUZZ_REPORT=file.jsonl writes
 * every failure with a command line that replays it.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  bodyFamilies,
  checkCase,
  concat,
  filesFamily,
  type FuzzCase,
  hostFamily,
  hugeFamily,
  latin1,
  methodFamily,
  nameFamilies,
  protocolFamily,
  queryFamily,
  randomBodies,
  Rng,
  specialFilesFamily,
  type Targets,
  unknownPaths,
  websocketFamily,
} from "./fuzz_cases.ts";
import { TestDaemon, uniqueName } from "./helpers.ts";
import { makeCert } from "./certs.ts";
import type { ByteConn } from "../contract/transport.ts";
import { TlsTransport } from "../contract/tls_transport.ts";

const SEED = Number(Deno.env.get("OUTPOST_FUZZ_SEED") ?? 0x5eed7);
/** A comma-separated list of families to run (all when unset), for working on one. */
const ONLY = Deno.env.get("OUTPOST_FUZZ_FAMILIES")?.split(",");
/** A file to write every failure to, one JSON object a line. */
const REPORT = Deno.env.get("OUTPOST_FUZZ_REPORT");
/** A request with no complete answer after this long is a hang. */
const TIMEOUT_MS = 10_000;
/** Bodies are read up to this size (a streamed special file is not read forever). */
const MAX_BODY = 4 * 2 ** 20;
/** The harness kills a daemon whose RSS grows this much (a runaway read would take the host). */
const RSS_CAP_MIB = 768;
const MAX_RESTARTS = 40;

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over the unix socket

interface Answer {
  /** "answered": a status line came; "closed": the connection ended without one; "refused":
   * no connection; "hang": no complete answer in time. */
  outcome: "answered" | "closed" | "refused" | "hang";
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  truncated: boolean;
  ms: number;
  error?: string;
}

function requestBytes(c: FuzzCase): Uint8Array {
  const lines = [`${c.method} ${c.target} HTTP/1.1`];
  if (c.host !== null) lines.push(`Host: ${c.host ?? "outpost"}`);
  const upgrade = c.headers?.some(([k]) => k.toLowerCase() === "upgrade");
  for (const [k, v] of c.headers ?? []) lines.push(`${k}: ${v}`);
  if (c.body) lines.push(`Content-Length: ${c.body.length}`);
  if (!upgrade) lines.push("Connection: close");
  return concat([latin1(lines.join("\r\n") + "\r\n\r\n"), c.body ?? new Uint8Array()]);
}

function indexOfCrlf2(buf: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

function dechunk(body: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let i = 0;
  const dec = new TextDecoder();
  while (i < body.length) {
    let eol = i;
    while (eol + 1 < body.length && !(body[eol] === 13 && body[eol + 1] === 10)) eol++;
    const size = parseInt(dec.decode(body.subarray(i, eol)), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return concat(parts);
}

/** Sends raw bytes and reads one answer (up to MAX_BODY), closing after a 101. */
/** Where requests go: the daemon's unix socket, or its HTTPS listener (set by each test). */
interface Transport {
  /** Names the transport in the report. */
  name: string;
  connect(): Promise<ByteConn>;
  /** What is wrong with an answer over this transport, if anything. */
  verdict(c: FuzzCase, a: Answer): string | undefined;
}
let transport: Transport;

/** The daemon's unix socket, judged by `verdict()`. */
function unixTransport(d: TestDaemon): Transport {
  return {
    name: "unix socket",
    connect: () => Deno.connect({ transport: "unix", path: d.socket }),
    verdict,
  };
}

async function exchange(
  request: Uint8Array,
  head: boolean,
  via: Transport = transport,
): Promise<Answer> {
  const started = performance.now();
  const none = { status: 0, headers: {}, body: new Uint8Array(), truncated: false };
  let conn: ByteConn;
  try {
    // A listener nobody serves (a dying daemon) can leave a connect pending.
    const connecting = via.connect();
    const got = await within(connecting, TIMEOUT_MS);
    if (!got) {
      connecting.then((c) => c.close(), () => {});
      return { ...none, outcome: "hang", ms: TIMEOUT_MS, error: "connect timed out" };
    }
    conn = got.value;
  } catch (err) {
    return { ...none, outcome: "refused", ms: 0, error: String(err) };
  }
  let timedOut = false;
  const close = () => {
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    close();
  }, TIMEOUT_MS);
  const writing = (async () => {
    for (let off = 0; off < request.length;) off += await conn.write(request.subarray(off));
  })().catch(() => {});
  const chunks: Uint8Array[] = [];
  let data: Uint8Array = new Uint8Array();
  let headerEnd = -1;
  let status = 0;
  let headers: Record<string, string> = {};
  let length: number | undefined;
  let chunked = false;
  let truncated = false;
  let complete = false;
  let error: string | undefined;
  const buf = new Uint8Array(256 * 1024);
  let total = 0;
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch (err) {
      if (!timedOut) error = String(err);
      break;
    }
    if (n === null) {
      complete = headerEnd >= 0 && length === undefined && !chunked;
      break;
    }
    chunks.push(buf.slice(0, n));
    total += n;
    if (headerEnd < 0) {
      data = concat(chunks.splice(0));
      chunks.push(data);
      headerEnd = indexOfCrlf2(data, 0);
      if (headerEnd < 0) continue;
      const lines = new TextDecoder("latin1").decode(data.subarray(0, headerEnd)).split("\r\n");
      status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(lines[0])?.[1] ?? -1);
      headers = Object.fromEntries(
        lines.slice(1).map((l) => {
          const i = l.indexOf(":");
          return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
        }),
      );
      if (status === 101 || head || status === 204 || status === 304) {
        complete = true;
        break;
      }
      if (headers["content-length"] !== undefined) length = Number(headers["content-length"]);
      chunked = /chunked/i.test(headers["transfer-encoding"] ?? "");
    }
    const bodyLen = total - headerEnd - 4;
    if (length !== undefined && bodyLen >= length) {
      complete = true;
      break;
    }
    if (chunked && endsWithLastChunk(chunks)) {
      complete = true;
      break;
    }
    if (bodyLen >= MAX_BODY) {
      truncated = complete = true;
      break;
    }
  }
  clearTimeout(timer);
  close();
  await writing;
  const ms = performance.now() - started;
  if (headerEnd < 0) {
    return { ...none, outcome: timedOut ? "hang" : "closed", ms, error };
  }
  const all = concat(chunks);
  let body = all.subarray(headerEnd + 4);
  if (chunked) body = dechunk(body);
  const outcome = complete ? "answered" : timedOut ? "hang" : "closed";
  return { outcome, status, headers, body, truncated, ms, error };
}

/** The promise's value if it settles within `ms`, else undefined (rejections propagate). */
async function within<T>(p: Promise<T>, ms: number): Promise<{ value: T } | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
  try {
    return await Promise.race([p.then((value) => ({ value })), late]);
  } finally {
    clearTimeout(timer);
  }
}

function endsWithLastChunk(chunks: Uint8Array[]): boolean {
  const last = chunks.at(-1)!;
  const tail = new TextDecoder("latin1").decode(last.subarray(Math.max(0, last.length - 7)));
  return tail.endsWith("\r\n0\r\n\r\n") || tail === "0\r\n\r\n";
}

// ---------------------------------------------------------------------------------------------
// The daemon: liveness, memory, state

function rssMiB(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Waits (30 s at most) until no operation runs, so accepted work has landed before comparing. */
async function settle(d: TestDaemon): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const a = await exchange(
      requestBytes({
        family: "",
        method: "GET",
        target: "/1.0/operations",
        expect: "any",
        what: "",
      }),
      false,
      unixTransport(d),
    );
    const ops = a.status === 200 ? JSON.parse(bodyText(a.body)).metadata ?? {} : {};
    if (a.status === 200 && !ops.running?.length && !ops.pending?.length) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  await new Promise((r) => setTimeout(r, 500));
}

/** Every process below `pid` (the daemon's lxc-attach helpers and what they run). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    for (const k of children.get(todo.pop()!) ?? []) {
      out.push(k);
      todo.push(k);
    }
  }
  return out;
}

class Watch {
  exited = false;
  peak = 0;
  overCap?: number;
  #timer: ReturnType<typeof setInterval>;
  constructor(readonly d: TestDaemon, base: number) {
    const proc = d.proc!;
    proc.status.then(() => this.exited = true);
    this.#timer = setInterval(() => {
      const rss = rssMiB(proc.pid);
      this.peak = Math.max(this.peak, rss);
      if (rss > base + RSS_CAP_MIB && !this.exited) {
        this.overCap = rss;
        proc.kill("SIGKILL");
      }
    }, 200);
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

interface StateSnapshot {
  api: Record<string, unknown>;
  disk: Record<string, string>;
}

const VOLATILE_FIELDS = ["status", "status_code", "last_used_at", "state"];

async function snapshotState(d: TestDaemon): Promise<StateSnapshot> {
  const instances = await d.api.get<Record<string, unknown>[]>("/1.0/instances?recursion=1");
  const api: Record<string, unknown> = {};
  for (const inst of instances) {
    const name = String(inst.name);
    api[`instance ${name}`] = Object.fromEntries(
      Object.entries(inst).filter(([k]) => !VOLATILE_FIELDS.includes(k)),
    );
    api[`snapshots of ${name}`] = await d.api.get(
      `/1.0/instances/${encodeURIComponent(name)}/snapshots?recursion=1`,
    );
  }
  api.images = (await d.api.get<Record<string, unknown>[]>("/1.0/images?recursion=1")).map((i) =>
    Object.fromEntries(Object.entries(i).filter(([k]) => k !== "last_used_at"))
  );
  api.aliases = await d.api.get("/1.0/images/aliases?recursion=1");
  api["server config"] = (await d.api.get<{ config: unknown }>("/1.0")).config;
  const disk: Record<string, string> = {};
  const list = (dir: string) => existsSync(dir) ? readdirSync(dir).sort().join("\n") : "";
  disk["containers/"] = list(d.lxcPath);
  disk["images/"] = list(join(d.dir, "images"));
  for (const name of readdirSync(d.lxcPath)) {
    const dir = join(d.lxcPath, name);
    disk[`containers/${name}/config`] = await Deno.readTextFile(join(dir, "config")).catch(() =>
      "(none)"
    );
    disk[`containers/${name}/rootfs`] = await tree(join(dir, "rootfs"));
  }
  return { api, disk };
}

/** Every entry under `root` with its type, size, mode and owner (not times). */
async function tree(root: string): Promise<string> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, e.name);
      const st = await Deno.lstat(path);
      const size = st.isFile ? st.size : 0;
      out.push(
        `${rel}/${e.name} ${e.isDirectory ? "d" : e.isSymlink ? "l" : "f"} ${size} ${
          (st.mode ?? 0).toString(8)
        } ${st.uid}:${st.gid}`,
      );
      if (e.isDirectory) await walk(path, `${rel}/${e.name}`);
    }
  };
  await walk(root, "");
  return out.join("\n");
}

function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v).sort().map((k) => [k, stable((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/** Human-readable differences between two state snapshots. */
function diffState(before: StateSnapshot, after: StateSnapshot): string[] {
  const out: string[] = [];
  const keys = (a: object, b: object) => [...new Set([...Object.keys(a), ...Object.keys(b)])];
  const created = keys(before.api, after.api).filter((k) =>
    k.startsWith("instance ") && !(k in before.api)
  ).map((k) => k.slice("instance ".length));
  if (created.length > 0) out.push(`${created.length} new instance(s): ${created.join(", ")}`);
  const dirs = (s: StateSnapshot) => s.disk["containers/"].split("\n").filter(Boolean);
  const newDirs = dirs(after).filter((n) => !dirs(before).includes(n));
  if (newDirs.length > 0) {
    out.push(`${newDirs.length} new container dir(s) under containers/: ${newDirs.join(", ")}`);
  }
  const isNew = (k: string) =>
    k === "containers/" ||
    [...created, ...newDirs].some((n) => k.endsWith(` ${n}`) || k.startsWith(`containers/${n}/`));
  for (const k of keys(before.api, after.api)) {
    if (isNew(k)) continue;
    const a = JSON.stringify(stable(before.api[k]));
    const b = JSON.stringify(stable(after.api[k]));
    if (a !== b) out.push(`${k}: ${preview(jsonDiff(before.api[k], after.api[k]), 600)}`);
  }
  for (const k of keys(before.disk, after.disk)) {
    if (isNew(k)) continue;
    const a = (before.disk[k] ?? "(missing)").split("\n");
    const b = (after.disk[k] ?? "(missing)").split("\n");
    if (a.join("\n") === b.join("\n")) continue;
    const gone = a.filter((l) => !b.includes(l)).map((l) => `- ${l}`);
    const added = b.filter((l) => !a.includes(l)).map((l) => `+ ${l}`);
    const lines = [...gone, ...added].slice(0, 12).map((l) => preview(l));
    out.push(`${k}:\n    ${lines.join("\n    ")}`);
  }
  return out;
}

function jsonDiff(a: unknown, b: unknown, path = ""): string {
  if (
    a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) &&
    !Array.isArray(b)
  ) {
    const parts: string[] = [];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const x = (a as Record<string, unknown>)[k];
      const y = (b as Record<string, unknown>)[k];
      if (JSON.stringify(stable(x)) !== JSON.stringify(stable(y))) {
        parts.push(jsonDiff(x, y, `${path}.${k}`));
      }
    }
    return parts.join("; ");
  }
  return `${path || "value"} ${preview(JSON.stringify(a) ?? "(none)", 80)} -> ${
    preview(JSON.stringify(b) ?? "(none)", 80)
  }`;
}

// ---------------------------------------------------------------------------------------------
// Verdicts and the report

interface Failure {
  kind: string;
  c: FuzzCase;
  status?: number;
  body?: string;
  ms?: number;
}

function preview(s: string, n = 160): string {
  // deno-lint-ignore no-control-regex
  const t = s.replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16)}`);
  return t.length > n ? `${t.slice(0, n)}…(${s.length} chars)` : t;
}

function bodyText(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

/** The `error` of an Incus error envelope, if the body is one. */
function errorOf(b: Uint8Array): string | undefined {
  try {
    const env = JSON.parse(bodyText(b));
    return typeof env?.error === "string" ? env.error : undefined;
  } catch {
    return undefined;
  }
}

/** What is wrong with an answer, if anything (envelope, status, acceptance, hang). */
function verdict(c: FuzzCase, a: Answer): string | undefined {
  if (a.outcome === "hang") return "hang";
  if (a.outcome === "closed" || a.outcome === "refused") {
    return c.protocol ? undefined : "no answer (connection closed)";
  }
  if (a.status >= 500) return `${a.status}`;
  if (c.expect === "reject" && a.status < 400) return `accepted (${a.status})`;
  if (a.status < 300 || a.status === 101 || c.method === "HEAD") return undefined;
  if (c.protocol && !a.headers["content-type"]?.includes("json")) return undefined;
  let env: { type?: unknown; error?: unknown; error_code?: unknown };
  try {
    env = JSON.parse(bodyText(a.body));
  } catch {
    return "error body is not JSON";
  }
  if (env?.type !== "error" || typeof env.error !== "string" || env.error === "") {
    return "error body is not an Incus error envelope";
  }
  if (env.error_code !== a.status) return `error_code ${env.error_code} != HTTP ${a.status}`;
  return undefined;
}

/** Replaces this run's names with placeholders, to group failures across cases. */
function template(s: string, t: Targets): string {
  let out = s.split("?")[0];
  const subs: [string, string][] = [
    [t.stopped, "{stopped}"],
    [t.running, "{running}"],
    [t.fingerprint, "{fp}"],
    [t.logFile, "{log}"],
    ...t.finishedOps.map((id): [string, string] => [id, "{op}"]),
  ];
  if (t.liveOp) subs.push([t.liveOp.id, "{live-op}"]);
  for (const [a, b] of subs) out = out.replaceAll(a, b);
  return out.length > 80 ? `${out.slice(0, 80)}…` : out;
}

/** Bytes as a printf(1) format: printable ASCII as is, the rest as \xHH. */
function printfFormat(bytes: Uint8Array): string {
  return [...bytes].map((b) =>
    b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c && b !== 0x25
      ? String.fromCharCode(b)
      : `\\x${b.toString(16).padStart(2, "0")}`
  ).join("");
}

/** A command line that replays a case with $SOCK set (curl when it can carry the bytes). */
function repro(c: FuzzCase): string {
  const printable = (s: string) => /^[\x20-\x7e]*$/.test(s);
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const raw = c.method === "RAW" ? c.body! : requestBytes(c);
  const curlable = c.target.startsWith("/") && printable(c.target) && c.target.length < 400 &&
    !c.protocol &&
    (c.headers ?? []).every(([k, v]) => printable(k + v) && v.length < 300) &&
    (c.host === undefined || (c.host !== null && printable(c.host) && c.host.length < 300)) &&
    (c.body?.length ?? 0) < 400;
  if (curlable) {
    const parts = ['curl -s --unix-socket "$SOCK"', "-X", c.method, q(`http://outpost${c.target}`)];
    if (c.host !== undefined) parts.push("-H", q(`Host: ${c.host}`));
    for (const [k, v] of c.headers ?? []) parts.push("-H", q(`${k}: ${v}`));
    if (!c.body) return parts.join(" ");
    return `printf '${printfFormat(c.body)}' | ${parts.join(" ")} --data-binary @-`;
  }
  if (raw.length > 600) return `(a ${raw.length}-byte request: see the case)`;
  return `printf '${printfFormat(raw)}' | python3 -c 'import socket,sys;` +
    `s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);s.sendall(sys.stdin.buffer.read());` +
    `print(s.recv(65536).decode("latin1"))' "$SOCK"`;
}

// ---------------------------------------------------------------------------------------------
// Set-up and the run

/** An image, a stopped and a running container, a snapshot, an exec log, a fifo; finished ops. */
async function setUp(d: TestDaemon): Promise<Targets> {
  const alias = "fzbb";
  await d.importBusybox(alias);
  const [image] = await d.api.get<{ fingerprint: string }[]>("/1.0/images?recursion=1");
  await d.api.run("PATCH", "/1.0", { body: { config: { "user.fuzz-canary": "1" } } });
  const stopped = uniqueName("fzs");
  const running = uniqueName("fzr");
  const ops: string[] = [];
  const run = async (method: string, path: string, body: unknown) => {
    const op = await d.api.run(method, path, { body }) as { id: string; metadata: unknown };
    ops.push(op.id);
    return op;
  };
  const canary = { "user.canary": "1", "environment.CANARY": "1" };
  const source = { type: "image", alias };
  await run("POST", "/1.0/instances", {
    name: stopped,
    source,
    description: "fuzz target",
    config: { ...canary, "limits.memory": "256MiB", "limits.processes": "500" },
  });
  await run("POST", "/1.0/instances", {
    name: running,
    source,
    description: "fuzz target",
    config: canary,
    start: true,
  });
  await run("POST", `/1.0/instances/${stopped}/snapshots`, { name: "snap0" });
  const setup = await run("POST", `/1.0/instances/${running}/exec`, {
    command: ["sh", "-c", "mkdir -p /tmp && mkfifo /tmp/fz.fifo && ln -s /dev/zero /tmp/fz.zero"],
    "record-output": true,
  }) as { metadata: { return: number; output: Record<string, string> } };
  assert.equal(setup.metadata.return, 0, "set-up exec");
  const records: Record<string, Record<string, unknown>> = {};
  for (const n of [stopped, running]) records[n] = await d.api.get(`/1.0/instances/${n}`);
  return {
    stopped,
    running,
    snap: "snap0",
    alias,
    fingerprint: image.fingerprint,
    finishedOps: ops,
    logFile: setup.metadata.output["1"].split("/").at(-1)!,
    fifo: "/tmp/fz.fifo",
    zeroLink: "/tmp/fz.zero",
    records,
  };
}

/** `n` valid reads of every kind (warms the daemon up before its memory is measured). */
async function warmUp(d: TestDaemon, t: Targets, n: number, strict = true): Promise<void> {
  const reads = [
    "/1.0",
    "/1.0/instances",
    "/1.0/instances?recursion=1",
    "/1.0/instances?recursion=2",
    `/1.0/instances/${t.stopped}`,
    `/1.0/instances/${t.running}/state`,
    `/1.0/instances/${t.stopped}/snapshots?recursion=1`,
    "/1.0/images?recursion=1",
    "/1.0/images/aliases",
    "/1.0/operations",
    "/1.0/resources",
    `/1.0/instances/${t.stopped}/files?path=/etc/hostname`,
    `/1.0/instances/${t.running}/logs`,
  ];
  for (let i = 0; i < n; i++) {
    const target = reads[i % reads.length];
    const a = await exchange(requestBytes(get(target)), false, unixTransport(d));
    if (strict) assert.equal(a.status, 200, `warm-up ${target}: ${bodyText(a.body)}`);
  }
}

function get(target: string): FuzzCase {
  return { family: "", method: "GET", target, expect: "any", what: "valid read" };
}

/** The families in the order they run; the live operation is made just before its cases. */
function plan(d: TestDaemon, t: Targets, rng: Rng): [string, () => Promise<FuzzCase[]>][] {
  const now = (f: () => FuzzCase[]) => () => Promise.resolve(f());
  return [
    ["body", now(() => bodyFamilies(t, rng))],
    ["names-paths", now(() => nameFamilies(t, rng))],
    ["unknown-paths", now(() => unknownPaths(t, rng))],
    ["methods", now(() => methodFamily(t))],
    ["query", now(() => queryFamily(t, rng))],
    ["files", now(() => filesFamily(t))],
    ["host", now(() => hostFamily(t))],
    ["websocket", async () => {
      const res = await d.api.request("POST", `/1.0/instances/${t.running}/exec`, {
        body: { command: ["true"], "wait-for-websocket": true },
      });
      if (res.type !== "async") throw new Error("exec answered no operation");
      const fds = res.metadata.metadata?.fds as Record<string, string>;
      t.liveOp = { id: res.metadata.id, secrets: fds };
      return websocketFamily(t);
    }],
    [
      "protocol",
      now(() =>
        protocolFamily(t).map(({ raw, what }) => ({
          family: "protocol",
          method: "RAW",
          target: "",
          body: raw,
          expect: "any" as const,
          protocol: true,
          what,
        }))
      ),
    ],
    ["random", now(() => randomBodies(t, rng, 500))],
    ["special-files", now(() => specialFilesFamily(t))],
    ["huge", now(() => hugeFamily(t, rng))],
  ];
}

/** Sends cases one at a time and judges each answer; after a crash, restarts the daemon. */
class Fuzzer {
  failures: Failure[] = [];
  sent: Record<string, number> = {};
  restarts = 0;
  aborted = "";
  rssBefore = 0;
  watch!: Watch;
  #slow: [number, string][] = [];
  #prev?: FuzzCase;
  /** Requests that hung since the last restart (they may still be running in the daemon). */
  #hung: string[] = [];
  #logOffset = 0;

  constructor(readonly d: TestDaemon, readonly t: Targets) {}

  async watchDaemon(): Promise<void> {
    this.#logOffset = (await this.d.log()).length;
    this.rssBefore = rssMiB(this.d.proc!.pid);
    this.watch = new Watch(this.d, this.rssBefore);
  }

  get total(): number {
    return Object.values(this.sent).reduce((a, b) => a + b, 0);
  }

  get slowest(): string[] {
    return this.#slow.sort((x, y) => y[0] - x[0]).slice(0, 10).map(([ms, w]) =>
      `  ${(ms / 1000).toFixed(1)} s ${w}`
    );
  }

  async send(c: FuzzCase): Promise<void> {
    const { t } = this;
    if (c.method !== "RAW") checkCase(c, t);
    this.sent[c.family] = (this.sent[c.family] ?? 0) + 1;
    const a = await exchange(
      c.method === "RAW" ? c.body! : requestBytes(c),
      c.method === "HEAD",
    );
    // A dead daemon: blame the request it died on (or the one before, if this one found it dead).
    if (a.outcome !== "answered" || this.watch.exited) {
      const alive = !this.watch.exited &&
        (await exchange(requestBytes(get("/1.0")), false)).status === 200;
      if (!alive) {
        const culprit = a.outcome === "refused" && this.#prev ? this.#prev : c;
        if (a.outcome === "refused") this.sent[c.family]--;
        this.#prev = undefined;
        await this.#recover(culprit, `during or right after this request (next: ${a.outcome})`);
        return;
      }
    }
    const why = transport.verdict(c, a);
    if (why === "hang") this.#hung.push(c.what);
    this.#slow.push([a.ms, `${c.method} ${preview(template(c.target, t), 70)} (${c.what})`]);
    if (this.#slow.length > 40) this.#slow = this.#slow.sort((x, y) => y[0] - x[0]).slice(0, 10);
    if (why) {
      this.failures.push({
        kind: why,
        c,
        status: a.status,
        body: preview(errorOf(a.body) ?? bodyText(a.body.subarray(0, 400))),
        ms: Math.round(a.ms),
      });
    }
    this.#prev = c;
  }

  /** Records the crash with the daemon's last words, then restarts it and re-measures memory. */
  async #recover(c: FuzzCase, how: string): Promise<void> {
    const { d } = this;
    const proc = d.proc!;
    this.watch.stop();
    let kind = this.watch.overCap
      ? `memory: RSS grew by over ${RSS_CAP_MIB} MiB (killed by the harness)`
      : "crash";
    if (!this.watch.exited && !await within(proc.status, 3000)) {
      kind = "unresponsive: alive but no answer to GET /1.0 (killed by the harness)";
      proc.kill("SIGKILL");
    }
    killHelpers(proc.pid);
    const log = (await d.log()).slice(this.#logOffset).trim().split("\n").slice(-12);
    const hung = this.#hung.length ? `\n    earlier hung requests: ${this.#hung.join("; ")}` : "";
    this.failures.push({
      kind,
      c,
      body: `${how}${hung}\n    daemon log:\n    ${log.join("\n    ")}`,
    });
    this.#hung = [];
    d.proc = undefined;
    if (!await within(proc.status, 15_000)) {
      this.aborted = `the daemon (pid ${proc.pid}) did not exit after SIGKILL`;
    } else if (++this.restarts > MAX_RESTARTS) {
      this.aborted = `stopped after ${MAX_RESTARTS} daemon restarts`;
    } else {
      console.log(`  daemon died (${kind}) after ${c.what}: restarting it`);
      if (!await within(d.spawn(), 60_000)) {
        this.aborted = "the daemon did not come back after a restart";
        return;
      }
      await warmUp(d, this.t, 13, false);
      await this.watchDaemon();
    }
  }
}

/** A killed daemon cannot finish exiting while its helpers block (a cat of a fifo or a pty). */
function killHelpers(daemonPid: number): void {
  for (const pid of descendants(daemonPid)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
}

/** What is wrong after the run: a dead daemon, grown memory, changed state. */
async function checkAfter(
  d: TestDaemon,
  t: Targets,
  fz: Fuzzer,
  before: StateSnapshot,
): Promise<{ problems: string[]; rssAfter: number }> {
  const problems: string[] = [];
  // Fuzzing stopped on a dead daemon: bring it back to read the state the requests left.
  const deadAtEnd = !d.proc || fz.watch.exited;
  if (deadAtEnd) {
    problems.push("the daemon was dead at the end (restarted to read the state)");
    d.proc = undefined;
    await within(d.spawn(), 60_000);
  }
  await settle(d);
  const answer = await exchange(requestBytes(get("/1.0")), false);
  if (answer.status !== 200) problems.push("the daemon does not answer GET /1.0 at the end");
  // Memory freed once idle counts: the lowest RSS over up to 30 s of quiet (V8 gives memory
  // back some seconds after a burst).
  let rssAfter = d.proc ? rssMiB(d.proc.pid) : 0;
  for (let i = 0; i < 60 && d.proc && rssAfter > 1.5 * fz.rssBefore; i++) {
    await new Promise((r) => setTimeout(r, 500));
    rssAfter = Math.min(rssAfter, rssMiB(d.proc.pid));
  }
  if (!deadAtEnd && rssAfter > 1.5 * fz.rssBefore) {
    problems.push(
      `daemon RSS grew from ${fz.rssBefore.toFixed(0)} MiB to ${rssAfter.toFixed(0)} MiB ` +
        `(peak ${fz.watch.peak.toFixed(0)} MiB), over 1.5x`,
    );
  }
  for (const [n, want] of [[t.stopped, "STOPPED"], [t.running, "RUNNING"]]) {
    const { state } = await d.lxcState(n);
    if (state !== want) problems.push(`${n} is ${state}, not ${want}`);
  }
  if (answer.status !== 200) return { problems, rssAfter };
  const after = await snapshotState(d);
  for (const diff of diffState(before, after)) problems.push(`state changed: ${diff}`);
  // A bricked config would keep the clean-up from stopping the container: put it back.
  for (const n of [t.stopped, t.running]) {
    const k = `containers/${n}/config`;
    if (after.disk[k] !== before.disk[k] && before.disk[k] !== "(none)") {
      await Deno.writeTextFile(join(d.lxcPath, n, "config"), before.disk[k]);
    }
  }
  return { problems, rssAfter };
}

/** The summary, the distinct failures (one example and a replay command each), the first 20. */
function report(fz: Fuzzer, t: Targets, secs: string, rssAfter: number) {
  const { failures, restarts } = fz;
  const summary = [
    `hostile fuzz: seed ${SEED}, ${fz.total} requests in ${secs} s, ${failures.length} failing, ` +
    `${restarts} daemon restart(s); RSS ${fz.rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB` +
    (restarts ? " (since the last restart)" : "") + (fz.aborted ? `; ${fz.aborted}` : ""),
    "  family           sent  failed",
    ...Object.entries(fz.sent).map(([f, n]) =>
      `  ${f.padEnd(16)} ${String(n).padStart(5)}  ${
        String(failures.filter((x) => x.c.family === f).length).padStart(6)
      }`
    ),
  ];
  const groups = new Map<string, Failure[]>();
  for (const f of failures) {
    const msg = f.kind === "crash" || f.kind.startsWith("memory")
      ? ""
      : (f.body ?? "").replace(/"[^"]*"|'[^']*'/g, "…").replace(/\d+/g, "N").slice(0, 70);
    const key = `${f.kind} | ${f.c.family} | ${f.c.method} ${template(f.c.target, t)} | ${msg}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const distinct = [...groups.entries()].map(([key, fs]) =>
    `  [${fs.length}x] ${key}\n      e.g. ${fs[0].c.what}\n      ${repro(fs[0].c)}`
  );
  const first = failures.slice(0, 20).map((f) =>
    `  ${f.kind}: [${f.c.family}] ${f.c.method} ${preview(f.c.target, 100)}` +
    `${f.c.host !== undefined ? ` (Host ${preview(String(f.c.host), 30)})` : ""}` +
    `\n    input: ${preview(f.c.what, 140)}` +
    (f.c.body && f.c.method !== "RAW"
      ? `\n    body: ${preview(new TextDecoder().decode(f.c.body.subarray(0, 200)), 120)}`
      : "") +
    `\n    -> ${f.status ?? "-"} ${f.body ?? ""} ${f.ms !== undefined ? `(${f.ms} ms)` : ""}`
  );
  return { summary, distinct, first };
}

/** Every failure as one JSON object a line (OUTPOST_FUZZ_REPORT). */
async function writeReport(path: string, fz: Fuzzer, t: Targets, problems: string[]) {
  const rows = [
    ...fz.failures.map((f) => ({
      kind: f.kind,
      family: f.c.family,
      request: `${f.c.method} ${template(f.c.target, t)}`,
      host: f.c.host,
      what: f.c.what,
      status: f.status,
      answer: f.body,
      repro: repro(f.c),
    })),
    ...problems.map((problem) => ({ kind: "after", problem })),
  ];
  await Deno.writeTextFile(path, rows.map((r) => JSON.stringify(r) + "\n").join(""));
}

/**
 * Over HTTPS as an untrusted caller, on top of `verdict()`: nothing is served but `GET /` and
 * `GET /1.0` (and an operation's websocket to whoever holds its secret).
 */
function untrustedVerdict(c: FuzzCase, a: Answer): string | undefined {
  const why = verdict(c, a);
  if (why || a.outcome !== "answered" || a.status >= 400) return why;
  // A raw case's method and path are in its request line.
  const [method, target] = c.method === "RAW"
    ? new TextDecoder("latin1").decode(c.body!.subarray(0, 512)).split("\r\n")[0].split(" ")
    : [c.method, c.target];
  const path = (target ?? "").split("?")[0];
  if (a.status === 101) {
    return /\/1\.0\/operations\/[^/]+\/websocket$/.test(path)
      ? undefined
      : "untrusted caller upgraded (101)";
  }
  // What was served is judged by what it says (targets such as `*` or `http://x/1.0` are served
  // as `/` and `/1.0`): the root's list, or the untrusted view of the server.
  if (method === "HEAD") {
    return /^(https?:\/\/[^/]*)?\/(1\.0)?$|^\*$/.test(path)
      ? undefined
      : `untrusted caller served (${a.status})`;
  }
  let meta: unknown;
  try {
    meta = JSON.parse(bodyText(a.body)).metadata;
  } catch {
    return `untrusted caller served (${a.status}), not JSON`;
  }
  const root = Array.isArray(meta) && meta.length === 1 && meta[0] === "/1.0";
  const m = meta as Record<string, unknown> | null;
  const untrustedView = m !== null && typeof m === "object" && m.auth === "untrusted" &&
    !("environment" in m) && !("config" in m);
  return root || untrustedView ? undefined : `untrusted caller served (${a.status})`;
}

/** The daemon's HTTPS listener on a free loopback port, with a client certificate or none. */
async function httpsTransport(d: TestDaemon, trusted: boolean): Promise<Transport> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await d.api.run("PATCH", "/1.0", {
    body: { config: { "core.https_address": `127.0.0.1:${port}` } },
  });
  const server = (await d.api.get<{ environment: { certificate: string } }>("/1.0")).environment
    .certificate;
  const dir = await Deno.makeTempDir({ prefix: "outpost-fuzz-cert-", dir: d.dir });
  const cert = await makeCert(dir, trusted ? "fuzz-trusted" : "fuzz-stranger");
  if (trusted) await d.api.run("POST", "/1.0/certificates", { body: { certificate: cert.base64 } });
  // The CLI's own TLS transport (node:tls): Deno.connectTls waits ~45 ms for each answer's first
  // byte from node's TLS server, which would make the full run take minutes.
  const tls = new TlsTransport({
    name: "fuzz",
    url: `https://127.0.0.1:${port}`,
    cert: cert.pem,
    key: await Deno.readTextFile(cert.path.replace(/\.crt$/, ".key")),
    serverCert: server,
  });
  return {
    name: trusted ? "HTTPS, trusted client" : "HTTPS, untrusted client",
    connect: () => tls.dial(),
    verdict: trusted ? verdict : untrustedVerdict,
  };
}

type Via = "unix" | "https-trusted" | "https-untrusted";

for (
  const [via, title] of [
    ["unix", "on the unix socket"],
    ["https-trusted", "over HTTPS as a trusted client"],
    ["https-untrusted", "over HTTPS as an untrusted client (403 but for GET /1.0)"],
  ] as [Via, string][]
) {
  Deno.test(
    `hostile fuzz ${title}: malformed requests over every endpoint are refused cleanly and change nothing`,
    () => fuzz(via),
  );
}

async function fuzz(via: Via): Promise<void> {
  const rng = new Rng(SEED);
  console.log(`hostile fuzz (${via}): seed ${SEED} (set OUTPOST_FUZZ_SEED to change it)`);
  const started = performance.now();
  const d = await TestDaemon.start();
  let fz: Fuzzer | undefined;
  try {
    const t = await setUp(d);
    transport = via === "unix"
      ? unixTransport(d)
      : await httpsTransport(d, via === "https-trusted");
    await warmUp(d, t, 390);
    const before = await snapshotState(d);
    fz = new Fuzzer(d, t);
    await fz.watchDaemon();

    // Creates a wrongly accepted request would make every later list slower: they go last.
    const creates: FuzzCase[] = [];
    const isCreate = (c: FuzzCase) => c.method === "POST" && c.target === "/1.0/instances";
    for (
      const [name, make] of [...plan(d, t, rng), [
        "creates",
        () => Promise.resolve(creates),
      ]] as const
    ) {
      if (fz.aborted) break;
      if (ONLY && name !== "creates" && !ONLY.includes(name)) continue;
      const made = await make();
      if (name !== "creates") creates.push(...made.filter(isCreate));
      for (const c of name === "creates" ? made : made.filter((c) => !isCreate(c))) {
        if (fz.aborted) break;
        await fz.send(c);
      }
      console.log(`  ${name}: done at ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    fz.watch.stop();

    const { problems, rssAfter } = await checkAfter(d, t, fz, before);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const { summary, distinct, first } = report(fz, t, secs, rssAfter);
    console.log([...summary, "slowest requests:", ...fz.slowest].join("\n"));
    if (REPORT) await writeReport(REPORT, fz, t, problems);
    if (distinct.length > 0) {
      console.log(
        `distinct failures (${distinct.length}), SOCK=${d.socket}:\n${distinct.join("\n")}`,
      );
    }
    if (problems.length > 0) console.log(`after the run:\n  ${problems.join("\n  ")}`);

    if (!ONLY) assert.ok(fz.total >= 3000, `only ${fz.total} requests were sent`);
    assert.ok(
      fz.failures.length === 0 && problems.length === 0,
      [
        ...summary,
        ...(problems.length ? ["after the run:", ...problems.map((p) => `  ${p}`)] : []),
        ...(first.length ? [`first ${first.length} failures:`, ...first] : []),
      ].join("\n"),
    );
  } finally {
    fz?.watch?.stop();
    // Helpers of hung requests (a cat of a fifo) would keep the daemon from stopping.
    if (d.proc) killHelpers(d.proc.pid);
    await d.cleanup();
  }
}
