/**
 * The daemon's side of the confined file helper (helper.ts): every access to a container's files
 * — the files API, the hostname written at create and rename — runs in a helper process rooted
 * in the container and, unprivileged, inside its user namespace. This module starts it, streams
 * content through its stdin/stdout with back-pressure, bounds its time, and turns its answers
 * into typed errors.
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
} from "../../agent/errors.ts";
import { concatBytes } from "../bytes.ts";
import type { Runner } from "../runner.ts";
import {
  HELPER_SUBCOMMAND,
  type HelperAnswer,
  type HelperOp,
  type HelperRequest,
  type HelperRoot,
  type HelperStat,
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
/** A helper that moves no byte for this long is killed (a FIFO swapped in, a hung FUSE mount). */
const IDLE_MS = 30_000;

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
      await this.#call(["unshare", "--"], { op: "ping", root: { kind: "dir", path: "/" } });
      if (probeMap && probeMap.length > 0) {
        await this.#call(enterStopped(probeMap), { op: "ping", root: { kind: "dir", path: "/" } });
      }
      return undefined;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  async stat(target: ConfinedTarget, path: string): Promise<HelperStat> {
    const a = await this.#call(target.enter, {
      op: "stat",
      path,
      maxEntries: MAX_ENTRIES,
      root: target.root,
    });
    if (!a.stat) throw new Error("The file helper answered without a stat");
    return a.stat;
  }

  /**
   * A directory's listing or a symlink's target (no body), or a regular file's metadata and its
   * content as a stream (bounded by its size at open), in one helper run.
   */
  async get(
    target: ConfinedTarget,
    path: string,
  ): Promise<{ stat: HelperStat; body?: ReadableStream<Uint8Array> }> {
    const run = this.#start(
      target.enter,
      { op: "get", path, maxEntries: MAX_ENTRIES, root: target.root },
      false,
    );
    const { answer, rest } = await run.answer();
    if (!answer.ok) {
      await run.finish();
      throw toError(answer);
    }
    if (!answer.stat) throw new Error("The file helper answered without a stat");
    if (answer.stat.type !== "file") {
      await run.finish();
      return { stat: answer.stat };
    }
    const reader = run.child.stdout.getReader();
    let pending: Uint8Array | undefined = rest.length > 0 ? rest : undefined;
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (pending) {
          controller.enqueue(pending);
          pending = undefined;
          return;
        }
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (value) {
          run.progress();
          controller.enqueue(value);
          return;
        }
        if (done) {
          reader.releaseLock();
          const code = await run.finish();
          if (code === 0) controller.close();
          else controller.error(new Error("The file helper failed while sending the file"));
        }
      },
      cancel: async () => {
        run.kill();
        await reader.cancel().catch(() => {});
        await run.finish();
      },
    }, { highWaterMark: 1 });
    return { stat: answer.stat, body };
  }

  async write(
    target: ConfinedTarget,
    op: Omit<Extract<HelperOp, { op: "write" }>, "op" | "maxBytes"> & {
      data?: Uint8Array | ReadableStream<Uint8Array>;
      maxBytes?: number;
    },
  ): Promise<void> {
    const { data, ...rest } = op;
    const req: HelperRequest = {
      ...rest,
      op: "write",
      maxBytes: op.maxBytes ?? MAX_PUSH_BYTES,
      root: target.root,
    };
    const run = this.#start(target.enter, req, true);
    const feeding = this.#feed(run, data);
    const { answer } = await run.answer();
    await feeding;
    await run.finish();
    if (!answer.ok) throw toError(answer);
  }

  async remove(target: ConfinedTarget, path: string): Promise<void> {
    await this.#call(target.enter, { op: "remove", path, root: target.root });
  }

  /** Streams `data` into the helper's stdin; stops quietly when the helper stops reading. */
  async #feed(run: HelperRun, data?: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    const writer = run.child.stdin.getWriter();
    try {
      if (data instanceof Uint8Array) {
        await writer.write(data);
      } else if (data) {
        const reader = data.getReader();
        try {
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            await writer.write(value);
            run.progress();
          }
        } finally {
          reader.releaseLock();
        }
      }
      await writer.close();
    } catch {
      // The helper exited early (its answer says why) or the client went away.
      run.kill();
      await writer.abort().catch(() => {});
    }
  }

  async #call(enter: string[], req: HelperRequest): Promise<HelperAnswer & { ok: true }> {
    const run = this.#start(enter, req, false);
    const { answer } = await run.answer();
    await run.finish();
    if (!answer.ok) throw toError(answer);
    return answer;
  }

  #start(enter: string[], req: HelperRequest, stdin: boolean): HelperRun {
    const child = this.#runner.spawn([...enter, ...this.#command, JSON.stringify(req)], {
      stdin,
      clearEnv: true,
      env: {
        DENO_DIR: join(this.#workDir, "cache"),
        DENO_NO_UPDATE_CHECK: "1",
        NO_COLOR: "1",
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      },
    });
    return new HelperRun(child, this.#log);
  }
}

/** One helper process: its answer line, a watchdog, and its end. */
class HelperRun {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #killed = false;
  #stderr: Promise<string>;

  constructor(readonly child: Deno.ChildProcess, private log: (msg: string) => void) {
    this.progress();
    this.#stderr = boundedText(child.stderr, 4096);
  }

  progress(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.log(`file helper ${this.child.pid}: no progress for ${IDLE_MS / 1000} s, killed`);
      this.kill();
    }, IDLE_MS);
  }

  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  /** Reads the answer line; the bytes after it (file content) are returned as `rest`. */
  async answer(): Promise<{ answer: HelperAnswer; rest: Uint8Array }> {
    const reader = this.child.stdout.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        this.progress();
        const nl = value.indexOf(10);
        if (nl < 0) {
          parts.push(value);
          size += value.length;
          if (size > MAX_ANSWER) {
            this.kill();
            throw new Error("The file helper's answer is too long");
          }
          continue;
        }
        parts.push(value.subarray(0, nl));
        const line = new TextDecoder().decode(concatBytes(parts));
        return { answer: parseAnswer(line), rest: value.subarray(nl + 1) };
      }
    } finally {
      reader.releaseLock();
    }
    const code = await this.finish();
    const why = (await this.#stderr).trim().split("\n").slice(-2).join("; ");
    throw new Error(
      `The file helper exited (${this.#killed ? "killed" : `code ${code}`}) without an answer${
        why ? `: ${why}` : ""
      }`,
    );
  }

  /** Waits for the process (its stdout must be consumed or cancelled by then). */
  async finish(): Promise<number> {
    await this.child.stdout.cancel().catch(() => {});
    const status = await this.child.status;
    clearTimeout(this.#timer);
    return status.code;
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
