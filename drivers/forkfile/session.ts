/**
 * One confined file helper process as the daemon sees it (client.ts starts them): requests one
 * at a time, answers read as lines and data as frames, a stall watchdog and an idle exit. An SFTP
 * helper is detached once rooted: its stdout and stdin then carry SFTP for the caller.
 */
import { concatBytes } from "../../contract/bytes.ts";
import { type HelperAnswer, type HelperOp, MAX_FRAME } from "./protocol.ts";
import type { SftpChannel } from "../files.ts";

/** The answer line is bounded (a listing of MAX_ENTRIES names of 255 bytes fits). */
const MAX_ANSWER = 16 * 2 ** 20;
/** A request that moves no byte for this long kills its helper (a hung FUSE mount, say). */
const STALL_MS = 30_000;
/** A helper nobody used for this long exits. */
const IDLE_MS = 5_000;

/** One helper process: requests one at a time, a stall watchdog, and an idle exit. */
export class Session {
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
  #detached = false;

  constructor(
    readonly child: Deno.ChildProcess,
    private log: (msg: string) => void,
    private onEnd: () => void,
  ) {
    this.#reader = child.stdout.getReader();
    this.#writer = child.stdin.getWriter();
    this.#stderr = boundedText(child.stderr, 4096);
    // A detached helper's last answers are still read after it exits: only close() cuts them.
    child.status.then(() => this.#finish(!this.#detached));
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

  /**
   * Hands the helper's stdout (what it sent after its answers first) and stdin to the caller, for
   * a helper that speaks SFTP once rooted: no watchdog or idle exit from now on, the caller ends
   * it with `close()`.
   */
  detach(): SftpChannel {
    this.#detached = true;
    clearTimeout(this.#stall);
    clearTimeout(this.#idle);
    const reader = this.#reader;
    const writer = this.#writer;
    const early = this.#buf;
    this.#buf = new Uint8Array(0);
    const readable = new ReadableStream<Uint8Array>({
      start: (c) => {
        if (early.length > 0) c.enqueue(early);
      },
      pull: async (c) => {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done || !value) {
          c.close();
          this.end();
        } else c.enqueue(value);
      },
      cancel: () => this.end(),
    }, { highWaterMark: 0 });
    const writable = new WritableStream<Uint8Array>({
      write: (chunk) => writer.write(chunk),
      close: () => writer.close(),
      abort: () => this.end(),
    }, { highWaterMark: 1 });
    return {
      readable,
      writable,
      close: () => this.end(),
      closed: this.child.status.then(() => {}, () => {}),
    };
  }

  /** Kills the helper and frees everything it held. */
  end(): void {
    this.#finish(true);
  }

  #finish(dropOutput: boolean): void {
    clearTimeout(this.#stall);
    clearTimeout(this.#idle);
    if (dropOutput) this.#reader.cancel().catch(() => {});
    if (!this.alive) return;
    this.alive = false;
    this.onEnd();
    try {
      this.child.kill("SIGKILL");
    } catch { /* already gone */ }
    this.#writer.close().catch(() => {});
  }
}

function parseAnswer(line: string): HelperAnswer {
  try {
    const a = JSON.parse(line);
    if (a && typeof a === "object" && typeof a.ok === "boolean") return a;
  } catch { /* below */ }
  throw new Error("The file helper answered something that is not an answer");
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
