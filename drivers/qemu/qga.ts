/**
 * A client for the QEMU guest agent (qemu-ga) through the host side of its virtio-serial port.
 *
 * The wire protocol is one JSON request per line and one JSON reply per line, one request at a
 * time. The stream can hold stale replies (a previous client's, or one that came after a
 * timeout), so every connection starts with `guest-sync-delimited`: a raw 0xFF byte resets the
 * agent's parser, and the agent puts a 0xFF before its reply; everything up to the reply carrying
 * our random id is discarded. A timeout marks the stream out of sync (the next call re-syncs), and
 * a dropped socket (QEMU restarted) is reconnected by the next call.
 */
import { Buffer } from "node:buffer";

export class QgaError extends Error {
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super(`Guest agent command "${command}" failed: ${desc}`);
    this.name = "QgaError";
  }
}

/** The guest agent did not answer in time (not started yet, busy, or the guest is down). */
export class QgaTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QgaTimeoutError";
  }
}

export interface QgaOptions {
  /** The default timeout of every call; 10 s. */
  timeoutMs?: number;
}

export interface CallOptions {
  timeoutMs?: number;
}

export interface ExecOptions extends CallOptions {
  env?: Record<string, string>;
  /** Bytes for the command's stdin (sent whole, then stdin is closed). */
  input?: Uint8Array;
  /** Collect stdout and stderr (returned by `execStatus` once the command exits); default true. */
  captureOutput?: boolean;
}

export interface ExecStatus {
  exited: boolean;
  exitCode?: number;
  /** The signal that ended the command. */
  signal?: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface RunOptions {
  env?: Record<string, string>;
  input?: Uint8Array;
  /** Give up (and try to kill the command) after this long; default none. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** The status poll interval; default 20 ms. */
  pollMs?: number;
}

export interface RunResult {
  /** The exit code, or 128 + the signal number when a signal ended the command. */
  code: number;
  signal?: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const FILE_CHUNK = 256 * 1024;
/**
 * The longest reply line kept: guest-exec output is capped at 16 MiB by qemu-ga, ~22 MiB in
 * base64. A guest whose agent sends more is cut off instead of growing the daemon.
 */
const MAX_LINE = 64 * 2 ** 20;
const MAX_QUEUED_LINES = 1000;

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const unb64 = (s: string | undefined) =>
  s ? new Uint8Array(Buffer.from(s, "base64")) : new Uint8Array();

function sleep(ms: number, signal?: AbortSignal) {
  return new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** A line of the agent's output; `sentinel` when a 0xFF came right before it. */
interface Line {
  text: string;
  sentinel: boolean;
}

/** One socket connection, its bytes split into lines at "\n" and at 0xFF. */
class Stream {
  #lines: Line[] = [];
  #parts: Uint8Array[] = [];
  #partSize = 0;
  #sentinel = false;
  #wake: (() => void) | undefined;
  alive = true;

  constructor(readonly sock: Deno.UnixConn) {
    this.#pump();
  }

  async write(bytes: Uint8Array) {
    let off = 0;
    while (off < bytes.length) off += await this.sock.write(bytes.subarray(off));
  }

  /** The next line, or `undefined` at the deadline; throws when the connection ends. */
  async next(deadline: number): Promise<Line | undefined> {
    for (;;) {
      const line = this.#lines.shift();
      if (line) return line;
      if (!this.alive) throw new Error("connection closed");
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** Drops whatever has been received and not read yet. */
  discard() {
    this.#lines = [];
  }

  close() {
    this.alive = false;
    try {
      this.sock.close();
    } catch {
      // already closed
    }
    this.#wake?.();
  }

  #flush() {
    if (this.#parts.length === 0) return;
    const text = dec.decode(Buffer.concat(this.#parts)).trim();
    this.#parts = [];
    this.#partSize = 0;
    if (text) this.#lines.push({ text, sentinel: this.#sentinel });
    // Lines nobody asked for are stale; a guest that floods them cannot grow the daemon.
    if (this.#lines.length > MAX_QUEUED_LINES) this.#lines.splice(0, this.#lines.length - 100);
    this.#sentinel = false;
  }

  /** Keeps a partial line; a guest sending one longer than any reply is cut off. */
  #keep(part: Uint8Array): boolean {
    this.#parts.push(part);
    this.#partSize += part.length;
    return this.#partSize <= MAX_LINE;
  }

  async #pump() {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await this.sock.read(buf);
        if (n === null) break;
        let start = 0;
        for (let i = 0; i < n; i++) {
          const b = buf[i];
          if (b !== 0x0a && b !== 0xff) continue;
          if (i > start && !this.#keep(buf.slice(start, i))) throw new Error("line too long");
          this.#flush();
          if (b === 0xff) this.#sentinel = true;
          start = i + 1;
        }
        if (n > start && !this.#keep(buf.slice(start, n))) throw new Error("line too long");
        this.#wake?.();
      }
    } catch {
      // reset or closed: same as the end of the stream
    }
    this.close();
  }
}

export class QgaClient {
  #stream: Stream | undefined;
  #synced = false;
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 1;
  #closed = false;
  readonly timeoutMs: number;

  constructor(readonly path: string, opts: QgaOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Runs an agent command and resolves with its `return` value; agent errors throw `QgaError`. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: CallOptions = {},
  ): Promise<T> {
    return this.#call(command, args, opts.timeoutMs, true) as Promise<T>;
  }

  /** Sends a command that has no reply on success (`guest-shutdown`, `guest-suspend-*`). */
  async send(command: string, args?: Record<string, unknown>, opts: CallOptions = {}) {
    await this.#call(command, args, opts.timeoutMs, false);
  }

  /** Whether the agent answers `guest-ping` within `timeoutMs` (default 1 s); never throws. */
  async ping(timeoutMs = 1000): Promise<boolean> {
    try {
      await this.execute("guest-ping", undefined, { timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves once the agent answers a sync (polling while the guest boots); throws at the deadline. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      try {
        await this.#exclusive(Math.min(left, 1000), "guest-sync-delimited", (d) => {
          this.#synced = false;
          return this.#ensure(d);
        });
        return;
      } catch (err) {
        if (this.#closed) throw err;
        if (Date.now() >= deadline) {
          throw new QgaTimeoutError(
            `Guest agent on ${this.path} did not answer within ${timeoutMs} ms: is qemu-ga running in the guest?`,
          );
        }
        await sleep(Math.min(50, Math.max(0, deadline - Date.now())));
      }
    }
  }

  /** Starts a command in the guest; returns its guest pid. */
  async exec(path: string, args: string[] = [], opts: ExecOptions = {}): Promise<{ pid: number }> {
    const a: Record<string, unknown> = { path, arg: args };
    if (opts.env) a.env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
    if (opts.input) a["input-data"] = b64(opts.input);
    a["capture-output"] = opts.captureOutput ?? true;
    return await this.execute<{ pid: number }>("guest-exec", a, opts);
  }

  async execStatus(pid: number, opts: CallOptions = {}): Promise<ExecStatus> {
    const r = await this.execute<{
      exited: boolean;
      exitcode?: number;
      signal?: number;
      "out-data"?: string;
      "err-data"?: string;
      "out-truncated"?: boolean;
      "err-truncated"?: boolean;
    }>("guest-exec-status", { pid }, opts);
    return {
      exited: r.exited,
      exitCode: r.exitcode,
      signal: r.signal,
      stdout: unb64(r["out-data"]),
      stderr: unb64(r["err-data"]),
      stdoutTruncated: r["out-truncated"] ?? false,
      stderrTruncated: r["err-truncated"] ?? false,
    };
  }

  /**
   * Runs `argv` in the guest to completion and collects its output. On timeout or abort the
   * command is sent SIGKILL (best effort, by the guest's `kill`) and the call rejects.
   */
  async run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new Error("No command to run in the guest");
    opts.signal?.throwIfAborted();
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    const callTimeout = () => Math.max(1, Math.min(this.timeoutMs, deadline - Date.now()));
    const { pid } = await this.exec(argv[0], argv.slice(1), {
      env: opts.env,
      input: opts.input,
      timeoutMs: callTimeout(),
    });
    const unfinished = () =>
      new QgaTimeoutError(
        `Command "${argv[0]}" did not finish in the guest within ${opts.timeoutMs} ms`,
      );
    try {
      for (;;) {
        opts.signal?.throwIfAborted();
        if (Date.now() >= deadline) throw unfinished();
        const st = await this.execStatus(pid, { timeoutMs: callTimeout() }).catch((err) => {
          // A status call cut short by the run's own deadline is the run timing out.
          throw err instanceof QgaTimeoutError && Date.now() >= deadline ? unfinished() : err;
        });
        if (st.exited) {
          return {
            code: st.signal ? 128 + st.signal : st.exitCode ?? 0,
            signal: st.signal || undefined,
            stdout: st.stdout,
            stderr: st.stderr,
          };
        }
        await sleep(Math.min(opts.pollMs ?? 20, Math.max(0, deadline - Date.now())), opts.signal);
      }
    } catch (err) {
      void this.#kill(pid); // in the background: the caller has waited long enough
      throw err;
    }
  }

  /** SIGKILLs a guest command and collects its status (and the `kill`'s), so the agent forgets both. */
  async #kill(pid: number) {
    const reap = async (p: number) => {
      for (let i = 0; i < 25; i++) {
        if ((await this.execStatus(p, { timeoutMs: 1000 })).exited) return;
        await sleep(20);
      }
    };
    try {
      const k = await this.exec("kill", ["-KILL", String(pid)], { timeoutMs: 1000 });
      await Promise.all([reap(pid), reap(k.pid)]);
    } catch {
      // best effort: the agent may be gone, or the guest may have no `kill`
    }
  }

  /** Opens a file in the guest (`mode` as fopen: r, w, a, r+...); returns the agent's handle. */
  fileOpen(path: string, mode = "r", opts: CallOptions = {}): Promise<number> {
    return this.execute<number>("guest-file-open", { path, mode }, opts);
  }

  async fileRead(
    handle: number,
    count = FILE_CHUNK,
    opts: CallOptions = {},
  ): Promise<{ data: Uint8Array; eof: boolean }> {
    const r = await this.execute<{ count: number; "buf-b64": string; eof: boolean }>(
      "guest-file-read",
      { handle, count },
      opts,
    );
    return { data: unb64(r["buf-b64"]), eof: r.eof };
  }

  /** Writes `bytes` at the handle's position; returns the count written. */
  async fileWrite(handle: number, bytes: Uint8Array, opts: CallOptions = {}): Promise<number> {
    const r = await this.execute<{ count: number }>(
      "guest-file-write",
      { handle, "buf-b64": b64(bytes) },
      opts,
    );
    return r.count;
  }

  async fileClose(handle: number, opts: CallOptions = {}): Promise<void> {
    await this.execute("guest-file-close", { handle }, opts);
  }

  /** The whole content of a guest file. */
  async readFile(path: string, opts: CallOptions = {}): Promise<Uint8Array> {
    const h = await this.fileOpen(path, "r", opts);
    try {
      const chunks: Uint8Array[] = [];
      for (;;) {
        const { data, eof } = await this.fileRead(h, FILE_CHUNK, opts);
        if (data.length) chunks.push(data);
        if (eof || data.length === 0) break;
      }
      return new Uint8Array(Buffer.concat(chunks));
    } finally {
      await this.fileClose(h, opts).catch(() => {});
    }
  }

  /** A guest file's content, chunk by chunk, at most `max` bytes (the handle closes at the end). */
  async *readChunks(path: string, max: number, opts: CallOptions = {}): AsyncGenerator<Uint8Array> {
    const h = await this.fileOpen(path, "r", opts);
    try {
      for (let left = max; left > 0;) {
        const { data, eof } = await this.fileRead(h, Math.min(FILE_CHUNK, left), opts);
        if (data.length) yield data.subarray(0, Math.min(data.length, left));
        left -= data.length;
        if (eof || data.length === 0) break;
      }
    } finally {
      await this.fileClose(h, opts).catch(() => {});
    }
  }

  /** Creates or replaces a guest file with `bytes` (or appends them with `append`). */
  async writeFile(
    path: string,
    bytes: Uint8Array,
    opts: CallOptions & { append?: boolean } = {},
  ): Promise<void> {
    const h = await this.fileOpen(path, opts.append ? "a" : "w", opts);
    try {
      let off = 0;
      while (off < bytes.length) {
        const n = await this.fileWrite(h, bytes.subarray(off, off + FILE_CHUNK), opts);
        if (n <= 0) throw new Error(`Guest agent wrote nothing to ${path}: is the disk full?`);
        off += n;
      }
    } finally {
      await this.fileClose(h, opts).catch(() => {});
    }
  }

  /** Closes the connection for good: later calls reject. */
  close() {
    this.#closed = true;
    this.#stream?.close();
    this.#stream = undefined;
  }

  #call(
    command: string,
    args: Record<string, unknown> | undefined,
    timeoutMs: number | undefined,
    reply: boolean,
  ): Promise<unknown> {
    return this.#exclusive(timeoutMs ?? this.timeoutMs, command, async (d) => {
      const stream = await this.#ensure(d);
      const id = this.#nextId++;
      const msg: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) msg.arguments = args;
      await stream.write(enc.encode(JSON.stringify(msg) + "\n"));
      if (!reply) return undefined;
      for (;;) {
        const line = await stream.next(d);
        if (!line) throw this.#timeout(command);
        const r = parse(line.text);
        // A reply with another id is stale; one with no id is ours (the agent answers in order).
        if (!r || r.id !== undefined && r.id !== id) continue;
        if (r.error) {
          const e = r.error as { class?: string; desc?: string };
          throw new QgaError(command, e.class ?? "GenericError", e.desc ?? "unknown error");
        }
        if ("return" in r) return r.return;
      }
    });
  }

  /**
   * Runs `fn` alone on the connection, within `timeoutMs` including the wait for its turn. A call
   * that fails other than by an agent error leaves the stream out of sync (the next call re-syncs);
   * a broken socket is dropped so the next call reconnects.
   */
  #exclusive<T>(
    timeoutMs: number,
    command: string,
    fn: (deadline: number) => Promise<T>,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    const run = this.#queue.then(async () => {
      if (this.#closed) throw new Error(`Guest agent client for ${this.path} is closed`);
      if (Date.now() >= deadline) throw this.#timeout(command, timeoutMs);
      try {
        return await fn(deadline);
      } catch (err) {
        if (err instanceof QgaError) throw err;
        this.#synced = false;
        if (err instanceof QgaTimeoutError) throw this.#timeout(command, timeoutMs);
        // An I/O error: this connection is done; the next call makes a new one.
        this.#stream?.close();
        this.#stream = undefined;
        if (this.#closed) throw err;
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(`Guest agent on ${this.path} failed "${command}": ${why}`);
      }
    });
    this.#queue = run.catch(() => {});
    // The turn may never come in time if earlier calls are slow: give up waiting at the deadline.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#timeout(command, timeoutMs)), timeoutMs + 50);
    });
    return Promise.race([run, late]).finally(() => clearTimeout(timer));
  }

  #timeout(command: string, timeoutMs?: number) {
    const within = timeoutMs === undefined ? "in time" : `within ${timeoutMs} ms`;
    return new QgaTimeoutError(`Guest agent on ${this.path} did not answer "${command}" ${within}`);
  }

  /** A connected, synced stream, connecting and syncing as needed before the deadline. */
  async #ensure(deadline: number): Promise<Stream> {
    if (!this.#stream?.alive) {
      this.#stream = undefined;
      this.#synced = false;
      for (;;) {
        try {
          this.#stream = new Stream(await Deno.connect({ transport: "unix", path: this.path }));
          break;
        } catch (err) {
          const retry = err instanceof Deno.errors.NotFound ||
            err instanceof Deno.errors.ConnectionRefused;
          if (!retry || Date.now() + 20 >= deadline) {
            throw new Error(
              `cannot connect: ${err instanceof Error ? err.message : err}`,
            );
          }
          await sleep(20);
        }
      }
    }
    const stream = this.#stream;
    if (!this.#synced) {
      stream.discard();
      const id = 1 + Math.floor(Math.random() * 0x7fff_ffff);
      const msg = JSON.stringify({ execute: "guest-sync-delimited", arguments: { id } });
      // The leading 0xFF makes the agent drop any half-read request of a previous client.
      await stream.write(new Uint8Array([0xff, ...enc.encode(msg + "\n")]));
      for (;;) {
        const line = await stream.next(deadline);
        if (!line) throw this.#timeout("guest-sync-delimited");
        if (line.sentinel && parse(line.text)?.return === id) break;
      }
      this.#synced = true;
    }
    return stream;
  }
}

function parse(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" ? v : undefined;
  } catch {
    return undefined;
  }
}
