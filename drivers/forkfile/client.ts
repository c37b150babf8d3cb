/**
 * The daemon's side of the confined file helper (helper.ts): every access to a container's files
 * — the files API, the hostname written at create and rename — runs in a helper process rooted
 * in the container and, unprivileged, inside its user namespace. This module keeps one helper per
 * container (started on first use, ended after a few idle seconds), sends it one request at a
 * time, streams content in frames with back-pressure, bounds its time, and turns its answers into
 * typed errors.
 */
import { chmodSync, copyFileSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import {
  BadRequest,
  Conflict,
  type DomainError,
  InsufficientStorage,
  NotFound,
  PayloadTooLarge,
} from "../../contract/errors.ts";
import { concatBytes } from "../../contract/bytes.ts";
import type { Runner } from "../runner.ts";
import {
  HELPER_SUBCOMMAND,
  type HelperAnswer,
  type HelperOp,
  type HelperRoot,
  type HelperStat,
  MAX_FRAME,
} from "./protocol.ts";

/** How one container is entered: the argv prefix that sets up its namespace, and the root. */
export interface ConfinedTarget {
  /** `nsenter --user=...`, `unshare --user --map-users=...`, or `unshare` (privileged). */
  enter: string[];
  root: HelperRoot;
}

/** A uid/gid range of a container's id map (`volatile.idmap.current`). */
export interface IdRange {
  isUid: boolean;
  isGid: boolean;
  hostId: number;
  nsId: number;
  range: number;
}

/** The argv prefix for a stopped container: a new user namespace with the container's map. */
export function enterStopped(map: IdRange[]): string[] {
  if (map.length === 0) return ["unshare", "--"];
  const argv = ["unshare", "--user"];
  for (const r of map) {
    if (r.isUid) argv.push(`--map-users=${r.hostId},${r.nsId},${r.range}`);
    if (r.isGid) argv.push(`--map-groups=${r.hostId},${r.nsId},${r.range}`);
  }
  return [...argv, "--setuid", "0", "--setgid", "0", "--"];
}

/** The argv prefix for a running container: its own user namespace (none when privileged). */
export function enterRunning(pid: number, privileged: boolean): string[] {
  if (privileged) return ["unshare", "--"];
  return ["nsenter", `--user=/proc/${pid}/ns/user`, "--"];
}

/** Content bigger than this is refused when pushed (a 413). */
export const MAX_PUSH_BYTES = 16 * 2 ** 30;
/** Directories listing more entries than this are refused (the list is held in memory). */
export const MAX_ENTRIES = 50_000;
/** The answer line is bounded (a listing of MAX_ENTRIES names of 255 bytes fits). */
const MAX_ANSWER = 16 * 2 ** 20;
/** A request that moves no byte for this long kills its helper (a hung FUSE mount, say). */
const STALL_MS = 30_000;
/** A helper nobody used for this long exits. */
const IDLE_MS = 5_000;
/** At most this many helpers live at once; the least recently used goes first. */
const MAX_SESSIONS = 16;

export interface ConfinedFilesOptions {
  runner: Runner;
  /** A directory the helper's code and its compile cache live in (readable by every uid). */
  workDir: string;
  log?: (msg: string) => void;
}

/** The command that runs the helper: the compiled binary's hidden subcommand, or `deno run`. */
function helperCommand(workDir: string): string[] {
  const exe = Deno.execPath();
  if (basename(exe) !== "deno") return [exe, HELPER_SUBCOMMAND];
  return [
    exe,
    "run",
    "--quiet",
    "--no-prompt",
    "--no-config",
    "--no-lock",
    "--allow-read",
    "--allow-write",
    "--allow-ffi",
    join(workDir, "helper.ts"),
  ];
}

export class ConfinedFiles {
  readonly #runner: Runner;
  readonly #workDir: string;
  readonly #command: string[];
  readonly #log: (msg: string) => void;
  /** Live helpers by target (the argv prefix and the root they were started with). */
  #sessions = new Map<string, Session>();

  constructor(opts: ConfinedFilesOptions) {
    this.#runner = opts.runner;
    this.#workDir = opts.workDir;
    this.#command = helperCommand(opts.workDir);
    this.#log = opts.log ?? (() => {});
  }

  /**
   * Puts the helper's code where a process of any uid can read it (the checkout may sit under a
   * private home), and runs it once so its compile cache is warm. Returns an error message when
   * a helper in a user namespace cannot run (file access to unprivileged containers then fails).
   */
  async prepare(probeMap?: IdRange[]): Promise<string | undefined> {
    mkdirSync(join(this.#workDir, "cache"), { recursive: true, mode: 0o755 });
    chmodSync(this.#workDir, 0o755);
    chmodSync(join(this.#workDir, "cache"), 0o755);
    if (this.#command[1] === "run") {
      for (const f of ["helper.ts", "protocol.ts"]) {
        copyFileSync(new URL(`./${f}`, import.meta.url), join(this.#workDir, f));
        chmodSync(join(this.#workDir, f), 0o644);
      }
    }
    try {
      const probes = [["unshare", "--"]];
      if (probeMap && probeMap.length > 0) probes.push(enterStopped(probeMap));
      for (const enter of probes) {
        await this.#request({ enter, root: { kind: "dir", path: "/" } }, { op: "ping" });
      }
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    } finally {
      this.close();
    }
  }

  /** Ends every helper (the daemon is stopping). */
  close(): void {
    for (const s of this.#sessions.values()) s.end();
    this.#sessions.clear();
  }

  async stat(target: ConfinedTarget, path: string): Promise<HelperStat> {
    const a = await this.#request(target, { op: "stat", path, maxEntries: MAX_ENTRIES });
    if (!a.stat) throw new Error("The file helper answered without a stat");
    return a.stat;
  }

  /**
   * A directory's listing or a symlink's target (no body), or a regular file's metadata and its
   * content as a stream (bounded by its size at open).
   */
  async get(
    target: ConfinedTarget,
    path: string,
  ): Promise<{ stat: HelperStat; body?: ReadableStream<Uint8Array> }> {
    const session = await this.#session(target);
    const turn = await session.turn();
    try {
      session.send({ op: "get", path, maxEntries: MAX_ENTRIES });
      const answer = await session.answer();
      if (!answer.ok) throw toError(answer);
      if (!answer.stat) throw new Error("The file helper answered without a stat");
      if (answer.stat.type !== "file") {
        turn.done();
        return { stat: answer.stat };
      }
      const body = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          try {
            const data = await session.frame();
            if (data.length > 0) {
              controller.enqueue(data);
              return;
            }
            controller.close();
            turn.done();
          } catch (err) {
            controller.error(err);
            session.end();
            turn.done();
          }
        },
        // A client that stops reading ends the helper: the rest of the file is not read.
        cancel: () => {
          session.end();
          turn.done();
        },
      }, { highWaterMark: 1 });
      return { stat: answer.stat, body };
    } catch (err) {
      turn.done();
      throw err;
    }
  }

  async write(
    target: ConfinedTarget,
    op: Omit<Extract<HelperOp, { op: "write" }>, "op" | "maxBytes"> & {
      data?: Uint8Array | ReadableStream<Uint8Array>;
      maxBytes?: number;
    },
  ): Promise<void> {
    const { data, ...rest } = op;
    const session = await this.#session(target);
    const turn = await session.turn();
    try {
      session.send({ ...rest, op: "write", maxBytes: op.maxBytes ?? MAX_PUSH_BYTES });
      // The answer may come early (an error): then the data still on its way is cut short.
      let answered = false;
      const answering = session.answer().finally(() => answered = true);
      answering.catch(() => {});
      await session.feed(data, () => answered);
      const answer = await answering;
      if (!answer.ok) throw toError(answer);
    } finally {
      turn.done();
    }
  }

  async remove(target: ConfinedTarget, path: string): Promise<void> {
    await this.#request(target, { op: "remove", path });
  }

  async #request(target: ConfinedTarget, op: HelperOp): Promise<HelperAnswer & { ok: true }> {
    const session = await this.#session(target);
    const turn = await session.turn();
    try {
      session.send(op);
      const answer = await session.answer();
      if (!answer.ok) throw toError(answer);
      return answer;
    } finally {
      turn.done();
    }
  }

  /**
   * The live helper for `target`, or a new one once it has rooted itself. A helper rooted in a
   * directory that has since been replaced (a restore, a delete and a new instance of the same
   * name) is not reused: its root must still be the directory the path names.
   */
  async #session(target: ConfinedTarget): Promise<Session> {
    const key = JSON.stringify([target.enter, target.root]);
    const live = this.#sessions.get(key);
    const current = target.root.kind === "dir" ? await identity(target.root.path) : undefined;
    const fresh = target.root.kind !== "dir" || (current && sameRoot(current, live?.root));
    if (live?.alive && fresh) {
      // Most recently used last: eviction takes the first.
      this.#sessions.delete(key);
      this.#sessions.set(key, live);
      return live;
    }
    if (live) this.#sessions.delete(key);
    while (this.#sessions.size >= MAX_SESSIONS) {
      const [oldest, s] = this.#sessions.entries().next().value!;
      this.#sessions.delete(oldest);
      s.end();
    }
    const child = this.#runner.spawn(
      [...target.enter, ...this.#command, JSON.stringify(target.root)],
      {
        stdin: true,
        clearEnv: true,
        env: {
          DENO_DIR: join(this.#workDir, "cache"),
          DENO_NO_UPDATE_CHECK: "1",
          NO_COLOR: "1",
          PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        },
      },
    );
    const session = new Session(child, this.#log, () => {
      if (this.#sessions.get(key) === session) this.#sessions.delete(key);
    });
    const turn = await session.turn();
    try {
      const rooted = await session.answer().catch((err) => {
        // A running container's init that went away before the helper reached it: a restart.
        if (target.root.kind !== "pid") throw err;
        throw new Conflict(
          "The instance stopped or restarted while its files were reached: try again",
        );
      });
      if (!rooted.ok) {
        session.end();
        throw toError(rooted);
      }
      session.root = rooted.root;
    } finally {
      turn.done();
    }
    this.#sessions.set(key, session);
    return session;
  }
}

/** The device and inode of a host directory the daemon owns (not one inside a container). */
async function identity(path: string): Promise<{ dev: number; ino: number } | undefined> {
  try {
    const st = await Deno.lstat(path);
    return { dev: st.dev, ino: st.ino ?? -1 };
  } catch {
    return undefined;
  }
}

function sameRoot(
  a: { dev: number; ino: number },
  b: { dev: number; ino: number } | undefined,
): boolean {
  return b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/** One helper process: requests one at a time, a stall watchdog, and an idle exit. */
class Session {
  alive = true;
  /** The root the helper reported once rooted. */
  root?: { dev: number; ino: number };
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #buf: Uint8Array = new Uint8Array(0);
  #queue: Promise<void> = Promise.resolve();
  #stall: ReturnType<typeof setTimeout> | undefined;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #stderr: Promise<string>;

  constructor(
    readonly child: Deno.ChildProcess,
    private log: (msg: string) => void,
    private onEnd: () => void,
  ) {
    this.#reader = child.stdout.getReader();
    this.#writer = child.stdin.getWriter();
    this.#stderr = boundedText(child.stderr, 4096);
    child.status.then(() => this.end());
  }

  /** Waits for this session to be free; `done()` frees it (and starts the idle clock). */
  async turn(): Promise<{ done: () => void }> {
    let release!: () => void;
    const prev = this.#queue;
    this.#queue = new Promise<void>((r) => release = r);
    await prev;
    clearTimeout(this.#idle);
    this.#progress();
    let released = false;
    return {
      done: () => {
        if (released) return;
        released = true;
        clearTimeout(this.#stall);
        clearTimeout(this.#idle);
        this.#idle = setTimeout(() => this.end(), IDLE_MS);
        release();
      },
    };
  }

  send(op: HelperOp): void {
    if (!this.alive) throw new Error("The file helper has exited");
    this.#writer.write(new TextEncoder().encode(`${JSON.stringify(op)}\n`)).catch(() => {});
  }

  /** Streams `data` as frames, then the empty end frame; stops early once `stop()` says so. */
  async feed(data: Uint8Array | ReadableStream<Uint8Array> | undefined, stop: () => boolean) {
    const frame = async (bytes: Uint8Array) => {
      const out = new Uint8Array(4 + bytes.length);
      new DataView(out.buffer).setUint32(0, bytes.length);
      out.set(bytes, 4);
      await this.#writer.write(out);
      this.#progress();
    };
    const chunks = async (bytes: Uint8Array) => {
      for (let off = 0; off < bytes.length && !stop(); off += MAX_FRAME) {
        await frame(bytes.subarray(off, off + MAX_FRAME));
      }
    };
    try {
      if (data instanceof Uint8Array) await chunks(data);
      else if (data) {
        const reader = data.getReader();
        try {
          while (!stop()) {
            const { value, done } = await reader.read();
            if (done) break;
            await chunks(value);
          }
        } finally {
          reader.cancel().catch(() => {});
        }
      }
      await frame(new Uint8Array());
    } catch (err) {
      // The helper is gone, or the client's upload broke off: this helper cannot go on.
      this.end();
      if (!stop()) throw err;
    }
  }

  /** The next answer line. */
  async answer(): Promise<HelperAnswer> {
    for (;;) {
      const nl = this.#buf.indexOf(10);
      if (nl >= 0) {
        const line = new TextDecoder().decode(this.#buf.subarray(0, nl));
        this.#buf = this.#buf.subarray(nl + 1);
        return parseAnswer(line);
      }
      if (this.#buf.length > MAX_ANSWER) {
        this.end();
        throw new Error("The file helper's answer is too long");
      }
      await this.#more();
    }
  }

  /** The next data frame (empty at the end of the data). */
  async frame(): Promise<Uint8Array> {
    while (this.#buf.length < 4) await this.#more();
    const len = new DataView(this.#buf.buffer, this.#buf.byteOffset, 4).getUint32(0);
    if (len > MAX_FRAME) {
      this.end();
      throw new Error("The file helper sent a frame that is too large");
    }
    while (this.#buf.length < 4 + len) await this.#more();
    const data = this.#buf.slice(4, 4 + len);
    this.#buf = this.#buf.subarray(4 + len);
    return data;
  }

  async #more(): Promise<void> {
    const { value, done } = await this.#reader.read().catch(() => ({
      value: undefined,
      done: true,
    }));
    if (done || !value) {
      this.end();
      const status = await this.child.status;
      const why = (await this.#stderr).trim().split("\n").slice(-2).join("; ");
      throw new Error(
        `The file helper exited (code ${status.code})${why ? `: ${why}` : ""}`,
      );
    }
    this.#progress();
    this.#buf = this.#buf.length === 0 ? value : concatBytes([this.#buf, value]);
  }

  #progress(): void {
    clearTimeout(this.#stall);
    this.#stall = setTimeout(() => {
      this.log(`file helper ${this.child.pid}: no progress for ${STALL_MS / 1000} s, killed`);
      this.end();
    }, STALL_MS);
  }

  /** Kills the helper and frees everything it held. */
  end(): void {
    clearTimeout(this.#stall);
    clearTimeout(this.#idle);
    if (!this.alive) return;
    this.alive = false;
    this.onEnd();
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
    this.#writer.close().catch(() => {});
    this.#reader.cancel().catch(() => {});
  }
}

function parseAnswer(line: string): HelperAnswer {
  try {
    const a = JSON.parse(line);
    if (a && typeof a === "object" && typeof a.ok === "boolean") return a;
  } catch { /* below */ }
  throw new Error("The file helper answered something that is not an answer");
}

function toError(a: HelperAnswer & { ok: false }): DomainError | Error {
  switch (a.kind) {
    case "BadRequest":
      return new BadRequest(a.message);
    case "NotFound":
      return new NotFound(a.message);
    case "Conflict":
      return new Conflict(a.message);
    case "TooLarge":
      return new PayloadTooLarge(a.message);
    case "NoSpace":
      return new InsufficientStorage(a.message);
    default:
      return new Error(`File helper: ${a.message}`);
  }
}

/** The first `max` bytes of a stream as text; the rest is drained. */
async function boundedText(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      if (size < max) {
        parts.push(chunk.subarray(0, max - size));
        size += Math.min(chunk.length, max - size);
      }
    }
  } catch { /* killed */ }
  return new TextDecoder().decode(concatBytes(parts));
}
