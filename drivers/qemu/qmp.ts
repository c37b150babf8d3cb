/**
 * A QMP client over QEMU's unix socket. QEMU serves one QMP client at a time (a second connection
 * gets no greeting until the first closes), so the daemon keeps one long-lived client per VM and
 * shares it: commands run concurrently, each reply is matched to its command by id, and events go
 * to every subscriber.
 */

export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** A command QEMU refused: `class` is QMP's error class, the message its `desc`. */
export class QmpError extends Error {
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super(`QMP command "${command}" failed: ${desc}`);
    this.name = "QmpError";
  }
}

export interface QmpConnectOptions {
  /** How long to wait for the socket to appear and QEMU to greet; default 5000 ms. */
  timeoutMs?: number;
  /** The pause between connection attempts; default 10 ms. */
  retryMs?: number;
}

export interface QmpExecuteOptions {
  /** Give up waiting for the reply after this long (the command may still run); default none. */
  timeoutMs?: number;
}

type Pending = {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
};

const enc = new TextEncoder();

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

/** A connection error worth retrying while QEMU starts (socket not there yet, or not listening). */
function retryable(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused;
}

export class QmpClient {
  #conn: Deno.UnixConn;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #listeners = new Set<(e: QmpEvent) => void>();
  #closeHooks = new Set<() => void>();
  #writing: Promise<unknown> = Promise.resolve();
  #closedError: Error | undefined;
  #greeting: ((g: QmpGreeting) => void) | undefined;
  /** Settles when the connection ends: QEMU exited, the socket broke, or `close()` was called. */
  readonly closed: Promise<void>;
  greeting: QmpGreeting | undefined;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.closed = this.#readLoop();
  }

  /**
   * Connects to the QMP socket at `path`, retrying until it appears, then reads the greeting and
   * leaves capabilities negotiation mode.
   */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const deadline = Date.now() + timeoutMs;
    let conn: Deno.UnixConn;
    for (;;) {
      try {
        conn = await Deno.connect({ transport: "unix", path });
        break;
      } catch (err) {
        if (!retryable(err) || Date.now() >= deadline) {
          throw new Error(`QMP socket ${path} is not accepting connections: ${errText(err)}`);
        }
        await sleep(Math.min(opts.retryMs ?? 10, Math.max(0, deadline - Date.now())));
      }
    }
    const client = new QmpClient(conn);
    try {
      const greeted = new Promise<QmpGreeting>((resolve) => client.#greeting = resolve);
      const left = Math.max(1, deadline - Date.now());
      client.greeting = await withTimeout(
        Promise.race([greeted, client.closed.then(() => Promise.reject(client.#closedError))]),
        left,
        () =>
          `QEMU did not greet on ${path} within ${timeoutMs} ms: another QMP client may hold it`,
      );
      await client.execute("qmp_capabilities", undefined, { timeoutMs: left });
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Runs a QMP command and resolves with its `return` value; QMP errors throw a `QmpError`. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#nextId++;
    const reply = new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
    });
    const msg: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) msg.arguments = args;
    const bytes = enc.encode(JSON.stringify(msg) + "\n");
    // Whole messages, one after another: a partial write must not interleave with another command.
    this.#writing = this.#writing.then(() => this.#writeAll(bytes)).catch((err) => {
      this.#settle(id, undefined, new Error(`QMP command "${command}" not sent: ${errText(err)}`));
    });
    if (opts.timeoutMs === undefined) return reply;
    return withTimeout(reply, opts.timeoutMs, () => {
      this.#pending.delete(id);
      return `QMP command "${command}" got no reply within ${opts.timeoutMs} ms`;
    });
  }

  /** Asks QEMU to exit; resolves once it has replied or gone away. */
  async quit(): Promise<void> {
    await Promise.race([this.execute("quit").catch(() => {}), this.closed]);
  }

  /** Subscribes to asynchronous events (SHUTDOWN, POWERDOWN, STOP, RESUME...); returns the unsubscribe function. */
  onEvent(fn: (e: QmpEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Resolves with the next event named `name` (that `filter` accepts). Call it before the command
   * that causes the event. Rejects after `timeoutMs` or when the connection closes first.
   */
  waitEvent(
    name: string,
    opts: { timeoutMs?: number; filter?: (e: QmpEvent) => boolean } = {},
  ): Promise<QmpEvent> {
    if (this.#closedError) {
      return Promise.reject(new Error(`QMP connection closed before event ${name}`));
    }
    let off = () => {};
    const seen = new Promise<QmpEvent>((resolve, reject) => {
      const unlisten = this.onEvent((e) => {
        if (e.event === name && (!opts.filter || opts.filter(e))) resolve(e);
      });
      const onClose = () => reject(new Error(`QMP connection closed before event ${name}`));
      this.#closeHooks.add(onClose);
      off = () => {
        unlisten();
        this.#closeHooks.delete(onClose);
      };
    });
    const waited = opts.timeoutMs === undefined
      ? seen
      : withTimeout(seen, opts.timeoutMs, () => `No ${name} event within ${opts.timeoutMs} ms`);
    return waited.finally(off);
  }

  /** Whether the connection is still open. */
  get isOpen(): boolean {
    return this.#closedError === undefined;
  }

  /** Closes the connection; pending commands reject. Safe to call more than once. */
  close(): void {
    if (!this.#closedError) this.#closedError = new Error("QMP connection closed");
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  async #writeAll(bytes: Uint8Array) {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  #settle(id: number, value: unknown, err?: Error) {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  #dispatch(line: string) {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line);
    } catch {
      return; // not JSON: nothing in QMP produces this; ignore rather than break the stream
    }
    if ("QMP" in msg) {
      this.#greeting?.(msg as unknown as QmpGreeting);
      this.#greeting = undefined;
    } else if ("event" in msg) {
      for (const fn of this.#listeners) {
        try {
          fn(msg as unknown as QmpEvent);
        } catch {
          // a subscriber's bug must not stop the reader
        }
      }
    } else if (typeof msg.id === "number" && this.#pending.has(msg.id)) {
      const p = this.#pending.get(msg.id)!;
      if ("error" in msg) {
        const e = msg.error as { class?: string; desc?: string };
        this.#settle(
          msg.id,
          undefined,
          new QmpError(p.command, e.class ?? "GenericError", e.desc ?? "unknown error"),
        );
      } else this.#settle(msg.id, msg.return);
    }
  }

  async #readLoop(): Promise<void> {
    const dec = new TextDecoder();
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        text += dec.decode(buf.subarray(0, n), { stream: true });
        let nl;
        while ((nl = text.indexOf("\n")) >= 0) {
          const line = text.slice(0, nl).trim();
          text = text.slice(nl + 1);
          if (line) this.#dispatch(line);
        }
      }
    } catch (err) {
      // QEMU exiting often resets the connection rather than closing it: that is a close too.
      if (!this.#closedError && !(err instanceof Deno.errors.ConnectionReset)) {
        this.#closedError = new Error(`QMP connection lost: ${errText(err)}`);
      }
    }
    if (!this.#closedError) this.#closedError = new Error("QMP connection closed by QEMU");
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    for (const id of [...this.#pending.keys()]) this.#settle(id, undefined, this.#closedError);
    for (const hook of [...this.#closeHooks]) hook();
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Races `p` against a timer; on timeout runs `onTimeout` for the error message. */
export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(onTimeout())), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
