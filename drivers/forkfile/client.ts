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
import type { Runner } from "../runner.ts";
import {
  HELPER_SUBCOMMAND,
  type HelperAnswer,
  type HelperOp,
  type HelperRoot,
  type HelperStat,
  SFTP_MODE,
} from "./protocol.ts";
import { Session } from "./session.ts";
import type { SftpChannel } from "../files.ts";

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
/** At most this many helpers live at once; the least recently used goes first. */
const MAX_SESSIONS = 16;
/** At most this many SFTP sessions (each a helper of its own) live at once; more are refused. */
export const MAX_SFTP_SESSIONS = 8;

export interface ConfinedFilesOptions {
  runner: Runner;
  /** A directory the helper's code and its compile cache live in (readable by every uid). */
  workDir: string;
  log?: (msg: string) => void;
}

/** The command that runs the helper: the compiled binary's hidden subcommand, or `deno run`. */
export function helperCommand(workDir: string): string[] {
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
  /** Live SFTP helpers, and how many are starting. */
  #sftpSessions = new Set<Session>();
  #sftpStarting = 0;

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
      for (
        const f of ["helper.ts", "protocol.ts", "sftp_server.ts", "sftp_wire.ts", "dir_reader.ts"]
      ) {
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

  /**
   * A helper of its own for one SFTP session on `target`: once rooted, its stdout and stdin carry
   * SFTP (sftp_server.ts). At most MAX_SFTP_SESSIONS at once; the channel's `close()` kills it.
   */
  async sftp(target: ConfinedTarget): Promise<SftpChannel> {
    if (this.#sftpSessions.size + this.#sftpStarting >= MAX_SFTP_SESSIONS) {
      throw new Conflict(
        `Too many SFTP sessions (${MAX_SFTP_SESSIONS}) are open: close one and try again`,
      );
    }
    this.#sftpStarting++;
    let session: Session | undefined;
    try {
      session = await this.#start(target, [SFTP_MODE], () => {
        if (session) this.#sftpSessions.delete(session);
      });
    } finally {
      this.#sftpStarting--;
    }
    if (session.alive) this.#sftpSessions.add(session);
    return session.detach();
  }

  /** Ends every helper (the daemon is stopping). */
  close(): void {
    for (const s of this.#sftpSessions) s.end();
    this.#sftpSessions.clear();
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
    // The helper may exit before #start returns (a root that fails its check): `session` is
    // still unset then, and nothing was kept under the key.
    // deno-lint-ignore prefer-const -- declared first: the callback below may run before it is set
    let session: Session | undefined;
    session = await this.#start(target, [], () => {
      if (session && this.#sessions.get(key) === session) this.#sessions.delete(key);
    });
    this.#sessions.set(key, session);
    return session;
  }

  /** A new helper for `target`, started with `mode` and answered once it has rooted itself. */
  async #start(target: ConfinedTarget, mode: string[], onEnd: () => void): Promise<Session> {
    const child = this.#runner.spawn(
      [...target.enter, ...this.#command, ...mode, JSON.stringify(target.root)],
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
    const session = new Session(child, this.#log, onEnd);
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
      return session;
    } finally {
      turn.done();
    }
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
