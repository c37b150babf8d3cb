/**
 * A TEST DOUBLE: an in-memory instance driver for unit tests of the core's orchestration
 * (`agent/*_test.ts`). It keeps each instance's storage (a flat map of files, its snapshots) and
 * power state in maps, runs a toy command model for exec and the console, records every call and
 * can be told to fail the next call of a method. It runs no host command and stands for no real driver: the
 * end-to-end tests in `tests/` use real LXC and QEMU. Nothing outside tests may import it.
 */
import { concatBytes } from "../contract/bytes.ts";
import { BadRequest, Conflict, NotFound } from "../contract/errors.ts";
import type { FileContent, FileInfo, FileWrite } from "../contract/files.ts";
import type { InstanceRuntime, NetworkState, PowerState } from "../contract/instance_state.ts";
import type { InstanceType } from "../contract/schemas.ts";
import type {
  DriverInfo,
  ExecOptions,
  ExecProcess,
  ExecRequest,
  ImageSource,
  InstanceSpec,
  RecoveryReport,
  StopOptions,
  VolatileChanges,
} from "../drivers/driver.ts";
import { dataBytes, type FileAccess } from "../drivers/files.ts";
import type { ProbedDriver } from "../drivers/registry.ts";
import type { SnapshotAccess } from "../drivers/snapshots.ts";

/** One instance's storage: its files (path → content), snapshots and power state. */
export interface MemoryStorage {
  power: PowerState;
  files: Map<string, Uint8Array>;
  snapshots: Map<string, Map<string, Uint8Array>>;
  /** The image file it was created from. */
  image: string;
  /** The `limits.*` values last applied live. */
  limits: Record<string, string>;
}

/** A call the driver received: the method (`snapshots.create`, `files.write`...), the instance. */
export interface MemoryCall {
  method: string;
  name: string;
  args: unknown[];
}

export interface MemoryDriverOptions {
  type?: InstanceType;
  /** Offer `snapshots` (default true). */
  snapshots?: boolean;
  /** Offer `files` (default true). */
  files?: boolean;
}

const encoder = new TextEncoder();

export class MemoryDriver implements ProbedDriver {
  readonly type: InstanceType;
  readonly storage = new Map<string, MemoryStorage>();
  readonly calls: MemoryCall[] = [];
  readonly snapshots?: SnapshotAccess;
  readonly files?: FileAccess;
  /** What `create` returns (the volatile keys a real driver sets, e.g. an id map). */
  createChanges: VolatileChanges = {};
  /** What `start` returns. */
  startChanges: VolatileChanges = {};
  /** The network `state` reports of a running instance. */
  network: Record<string, NetworkState> = {};
  #available = true;
  #error = "";
  #failures = new Map<string, Error[]>();
  #nextPid = 1000;

  constructor(opts: MemoryDriverOptions = {}) {
    this.type = opts.type ?? "container";
    if (opts.snapshots ?? true) this.snapshots = new MemorySnapshots(this);
    if (opts.files ?? true) this.files = new MemoryFiles(this);
  }

  // --- test controls ---

  /** The next call of `method` (after it is recorded) throws `err`. Queued calls fail in order. */
  failNext(method: string, err: Error = new Error(`${method} failed (injected)`)): void {
    const queue = this.#failures.get(method) ?? [];
    queue.push(err);
    this.#failures.set(method, queue);
  }

  /** Makes the driver unavailable, as a probe that found its tool missing would. */
  setUnavailable(error: string): void {
    this.#available = false;
    this.#error = error;
  }

  /** Changes an instance's power behind the core's back (it died, was frozen, was started). */
  setPower(name: string, power: PowerState): void {
    this.#storage(name).power = power;
  }

  /** Adds storage for `name` without a call (what an interrupted create would leave). */
  addStorage(name: string, files: Record<string, string> = {}): MemoryStorage {
    const s: MemoryStorage = {
      power: "Stopped",
      files: new Map(Object.entries(files).map(([p, c]) => [p, encoder.encode(c)])),
      snapshots: new Map(),
      image: "",
      limits: {},
    };
    this.storage.set(name, s);
    return s;
  }

  /** A file's content as text, or undefined. */
  readFile(name: string, path: string): string | undefined {
    const data = this.storage.get(name)?.files.get(path);
    return data && new TextDecoder().decode(data);
  }

  writeFile(name: string, path: string, content: string): void {
    this.#storage(name).files.set(path, encoder.encode(content));
  }

  /** The calls of `method`, in order. */
  called(method: string): MemoryCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** The calls as `method name` lines, for checking order. */
  trace(): string[] {
    return this.calls.map((c) => `${c.method} ${c.name}`);
  }

  /** Records a call and throws an injected failure if one is queued for the method. */
  record(method: string, name: string, ...args: unknown[]): void {
    this.calls.push({ method, name, args });
    const err = this.#failures.get(method)?.shift();
    if (err) throw err;
  }

  #storage(name: string): MemoryStorage {
    const s = this.storage.get(name);
    if (!s) throw new NotFound(`No storage for instance "${name}" (memory driver)`);
    return s;
  }

  #power(name: string, from: PowerState[], to: PowerState): void {
    const s = this.#storage(name);
    if (!from.includes(s.power)) {
      throw new Error(`Instance "${name}" is ${s.power.toLowerCase()} (memory driver)`);
    }
    s.power = to;
  }

  // --- Driver ---

  info(): DriverInfo {
    return {
      name: `memory-${this.type}`,
      version: "0",
      available: this.#available,
      error: this.#error,
    };
  }

  probe(): Promise<DriverInfo> {
    return Promise.resolve(this.info());
  }

  create(inst: InstanceSpec, image: ImageSource): Promise<VolatileChanges> {
    this.record("create", inst.name, image);
    if (this.storage.has(inst.name)) {
      throw new Conflict(`Storage for "${inst.name}" already exists (memory driver)`);
    }
    this.addStorage(inst.name, { "/etc/hostname": `${inst.name}\n` }).image = image.file;
    return Promise.resolve({ ...this.createChanges });
  }

  start(inst: InstanceSpec): Promise<VolatileChanges> {
    this.record("start", inst.name);
    this.#power(inst.name, ["Stopped"], "Running");
    return Promise.resolve({ ...this.startChanges });
  }

  stop(inst: InstanceSpec, opts: StopOptions): Promise<void> {
    this.record("stop", inst.name, opts);
    this.#power(inst.name, ["Running", "Frozen"], "Stopped");
    return Promise.resolve();
  }

  freeze(inst: InstanceSpec): Promise<void> {
    this.record("freeze", inst.name);
    this.#power(inst.name, ["Running"], "Frozen");
    return Promise.resolve();
  }

  unfreeze(inst: InstanceSpec): Promise<void> {
    this.record("unfreeze", inst.name);
    this.#power(inst.name, ["Frozen"], "Running");
    return Promise.resolve();
  }

  /** Removes the storage and its snapshots, running or not (as the LXC driver kills first). */
  delete(inst: InstanceSpec): Promise<void> {
    this.record("delete", inst.name);
    this.storage.delete(inst.name);
    return Promise.resolve();
  }

  rename(inst: InstanceSpec, newName: string): Promise<void> {
    this.record("rename", inst.name, newName);
    const s = this.#storage(inst.name);
    if (s.power !== "Stopped") throw new Error(`Instance "${inst.name}" is not stopped`);
    if (this.storage.has(newName)) {
      throw new Conflict(`Storage for "${newName}" already exists (memory driver)`);
    }
    this.storage.delete(inst.name);
    this.storage.set(newName, s);
    return Promise.resolve();
  }

  /** Copies the files (of the instance, or of snapshot `from`) and the snapshots named. */
  copy(
    source: InstanceSpec,
    target: InstanceSpec,
    opts: { from?: string; snapshots: string[] },
  ): Promise<VolatileChanges> {
    this.record("copy", source.name, target.name, opts);
    const s = this.#storage(source.name);
    if (this.storage.has(target.name)) {
      throw new Conflict(`Storage for "${target.name}" already exists (memory driver)`);
    }
    const files = opts.from ? s.snapshots.get(opts.from) : s.files;
    if (!files) throw new NotFound(`No snapshot "${opts.from}" (memory driver)`);
    this.storage.set(target.name, {
      power: "Stopped",
      files: new Map(files),
      snapshots: new Map(opts.snapshots.map((n) => [n, new Map(s.snapshots.get(n))])),
      image: s.image,
      limits: {},
    });
    return Promise.resolve({});
  }

  storageNames(): Promise<string[]> {
    this.record("storageNames", "");
    return Promise.resolve([...this.storage.keys()].sort());
  }

  recover(inst: InstanceSpec, snapshots: string[]): Promise<RecoveryReport> {
    this.record("recover", inst.name, snapshots);
    const have = this.storage.get(inst.name)?.snapshots ?? new Map();
    return Promise.resolve({
      actions: [],
      missingSnapshots: snapshots.filter((s) => !have.has(s)),
    });
  }

  async state(inst: InstanceSpec): Promise<InstanceRuntime> {
    const status = await this.status(inst);
    return {
      status,
      pid: status === "Running" || status === "Frozen" ? 1 : -1,
      processes: status === "Running" ? 1 : 0,
      memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
      cpu: { usage: 0 },
      network: status === "Running" ? structuredClone(this.network) : {},
    };
  }

  /** Not recorded (the core asks often); `Error` for an instance with no storage. */
  status(inst: InstanceSpec): Promise<PowerState> {
    return Promise.resolve(this.storage.get(inst.name)?.power ?? "Error");
  }

  /**
   * Runs a toy command: `true`, `false`, `echo ARGS...`, `env` (the environment, sorted), `cat`
   * (stdin to stdout until stdin closes) and `sleep` (until signalled); anything else exits 127.
   */
  exec(inst: InstanceSpec, req: ExecRequest, opts: ExecOptions): Promise<ExecProcess> {
    this.record("exec", inst.name, req, opts);
    if (this.storage.get(inst.name)?.power !== "Running") {
      throw new Error(`Instance "${inst.name}" is not running (memory driver)`);
    }
    return Promise.resolve(toyProcess(this.#nextPid++, req, opts));
  }

  /** A console that echoes what it is sent (the toy `cat` under a PTY). */
  console(inst: InstanceSpec, opts: { width?: number; height?: number }): Promise<ExecProcess> {
    this.record("console", inst.name, opts);
    if (this.storage.get(inst.name)?.power !== "Running") {
      throw new Error(`Instance "${inst.name}" is not running (memory driver)`);
    }
    const req = { command: ["cat"], environment: {} };
    return Promise.resolve(toyProcess(this.#nextPid++, req, { interactive: true, ...opts }));
  }

  /** A host file served as every instance's runtime log (`memory.log`), when set. */
  runtimeLogPath?: string;

  runtimeLogs(_inst: InstanceSpec): Record<string, string> {
    return this.runtimeLogPath ? { "memory.log": this.runtimeLogPath } : {};
  }

  /** The console log: one line naming the instance. */
  consoleLog(inst: InstanceSpec): Promise<Uint8Array> {
    this.record("consoleLog", inst.name);
    return Promise.resolve(encoder.encode(`console of ${inst.name}\n`));
  }

  applyLimits(inst: InstanceSpec, changed: string[]): Promise<void> {
    this.record("applyLimits", inst.name, changed);
    const s = this.#storage(inst.name);
    for (const k of changed) {
      if (inst.config[k] === undefined) delete s.limits[k];
      else s.limits[k] = inst.config[k];
    }
    return Promise.resolve();
  }
}

/** Snapshots as copies of the file map. */
class MemorySnapshots implements SnapshotAccess {
  constructor(private d: MemoryDriver) {}

  #storage(name: string): MemoryStorage {
    const s = this.d.storage.get(name);
    if (!s) throw new NotFound(`No storage for instance "${name}" (memory driver)`);
    return s;
  }

  create(inst: InstanceSpec, snap: string): Promise<void> {
    this.d.record("snapshots.create", inst.name, snap);
    const s = this.#storage(inst.name);
    if (s.snapshots.has(snap)) throw new Conflict(`Storage for snapshot "${snap}" exists`);
    s.snapshots.set(snap, new Map(s.files));
    return Promise.resolve();
  }

  restore(inst: InstanceSpec, snap: string): Promise<void> {
    this.d.record("snapshots.restore", inst.name, snap);
    const s = this.#storage(inst.name);
    const files = s.snapshots.get(snap);
    if (!files) throw new NotFound(`Storage for snapshot "${snap}" is missing`);
    if (s.power !== "Stopped") throw new Error(`Instance "${inst.name}" is not stopped`);
    s.files = new Map(files);
    return Promise.resolve();
  }

  delete(inst: InstanceSpec, snap: string): Promise<void> {
    this.d.record("snapshots.delete", inst.name, snap);
    this.d.storage.get(inst.name)?.snapshots.delete(snap);
    return Promise.resolve();
  }

  rename(inst: InstanceSpec, from: string, to: string): Promise<void> {
    this.d.record("snapshots.rename", inst.name, from, to);
    const s = this.#storage(inst.name);
    const files = s.snapshots.get(from);
    if (!files) throw new NotFound(`Storage for snapshot "${from}" is missing`);
    if (s.snapshots.has(to)) throw new Conflict(`Storage for snapshot "${to}" exists`);
    s.snapshots.delete(from);
    s.snapshots.set(to, files);
    return Promise.resolve();
  }
}

/** Regular files only, in one flat directory `/`; owned by root, mode 0644. */
class MemoryFiles implements FileAccess {
  constructor(private d: MemoryDriver) {}

  #files(name: string): Map<string, Uint8Array> {
    const s = this.d.storage.get(name);
    if (!s) throw new NotFound(`No storage for instance "${name}" (memory driver)`);
    return s.files;
  }

  #info(name: string, path: string): FileInfo {
    const files = this.#files(name);
    if (path === "/") {
      const entries = [...files.keys()].map((p) => p.slice(1).split("/")[0]);
      return { type: "directory", uid: 0, gid: 0, mode: 0o755, size: 0, entries };
    }
    const data = files.get(path);
    if (!data) throw new NotFound(`"${path}" not found`);
    return { type: "file", uid: 0, gid: 0, mode: 0o644, size: data.length };
  }

  stat(inst: InstanceSpec, path: string): Promise<FileInfo> {
    this.d.record("files.stat", inst.name, path);
    return Promise.resolve(this.#info(inst.name, path));
  }

  get(inst: InstanceSpec, path: string): Promise<FileInfo | FileContent> {
    this.d.record("files.get", inst.name, path);
    const info = this.#info(inst.name, path);
    if (info.type !== "file") return Promise.resolve(info);
    const data = this.#files(inst.name).get(path)!;
    return Promise.resolve({ info, body: ReadableStream.from([data]) });
  }

  async write(inst: InstanceSpec, path: string, w: FileWrite): Promise<void> {
    this.d.record("files.write", inst.name, path, w);
    if (w.type !== "file") throw new BadRequest("The memory driver keeps regular files only");
    const files = this.#files(inst.name);
    const data = await dataBytes(w.data, 2 ** 20);
    const old = w.append ? files.get(path) ?? new Uint8Array() : new Uint8Array();
    files.set(path, concatBytes([old, data]));
  }

  remove(inst: InstanceSpec, path: string): Promise<void> {
    this.d.record("files.remove", inst.name, path);
    if (!this.#files(inst.name).delete(path)) throw new NotFound(`"${path}" not found`);
    return Promise.resolve();
  }
}

/** A process of the toy command model, with real streams. */
function toyProcess(pid: number, req: ExecRequest, opts: ExecOptions): ExecProcess {
  let out!: ReadableStreamDefaultController<Uint8Array>;
  let err: ReadableStreamDefaultController<Uint8Array> | undefined;
  const stdout = new ReadableStream<Uint8Array>({ start: (c) => void (out = c) });
  const stderr = opts.interactive
    ? undefined
    : new ReadableStream<Uint8Array>({ start: (c) => void (err = c) });
  let settle!: (code: number) => void;
  const status = new Promise<number>((r) => settle = r);
  let done = false;
  const emit = (c: ReadableStreamDefaultController<Uint8Array>, text: string | Uint8Array) => {
    try {
      c.enqueue(typeof text === "string" ? encoder.encode(text) : text);
    } catch { /* the reader cancelled */ }
  };
  const finish = (code: number) => {
    if (done) return;
    done = true;
    for (const c of [out, err]) {
      try {
        c?.close();
      } catch { /* the reader cancelled */ }
    }
    settle(code);
  };
  const [cmd, ...args] = req.command;
  const discard = new WritableStream<Uint8Array>();
  let stdin: WritableStream<Uint8Array> = discard;
  switch (cmd) {
    case "true":
      finish(0);
      break;
    case "false":
      finish(1);
      break;
    case "echo":
      emit(out, `${args.join(" ")}\n`);
      finish(0);
      break;
    case "env":
      emit(
        out,
        Object.entries(req.environment).map(([k, v]) => `${k}=${v}\n`).sort().join(""),
      );
      finish(0);
      break;
    case "cat":
      stdin = new WritableStream<Uint8Array>({
        write: (chunk) => emit(out, chunk),
        close: () => finish(0),
        abort: () => finish(0),
      });
      break;
    case "sleep":
      break;
    default:
      emit(err ?? out, `${cmd}: not found\n`);
      finish(127);
  }
  return {
    pid,
    stdin,
    stdout,
    stderr,
    resize: () => {},
    signal: (signo) => {
      finish(128 + signo);
      return Promise.resolve();
    },
    kill: () => finish(137),
    status,
  };
}
