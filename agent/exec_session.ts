/**
 * The websockets of one `exec` operation: secrets per fd, stdin buffered from the moment a socket
 * connects (clients send input before the other sockets exist), output pumped as binary frames,
 * end of stream as an empty text frame, and `window-resize` / `signal` control messages.
 *
 * The command starts once the sockets it needs are connected. As with LXD, a non-interactive
 * command needs only its stdio (0, 1, 2): `control` is optional there, and pylxd never opens it;
 * an interactive one (and a console) needs 0 and `control`.
 */
import type { ExecProcess } from "../drivers/driver.ts";
import type { UpgradeWebSocket } from "./operations.ts";

/** How long the client has to connect the websockets the command needs. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** How long output may keep flowing after the command has exited. */
const OUTPUT_GRACE_MS = 1_000;
/** Output waits while a socket has this much unsent data (back-pressure). */
const HIGH_WATER = 4 * 2 ** 20;

type Control =
  | { command: "window-resize"; args: { width: string | number; height: string | number } }
  | { command: "signal"; signal: number };

function secret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ExecSession {
  readonly secrets: Record<string, string>;
  /** The fds that must be connected before the command starts. */
  readonly required: readonly string[];
  #sockets = new Map<string, WebSocket>();
  #opened = new Set<string>();
  #ready!: () => void;
  #readyPromise = new Promise<void>((r) => this.#ready = r);
  /** Set once the session has closed its sockets: later connections are refused. */
  #closed = false;
  #stdin: Uint8Array[] = [];
  #stdinEnded = false;
  #controls: Control[] = [];
  #proc?: ExecProcess;
  #stdinWriter?: WritableStreamDefaultWriter<Uint8Array>;
  #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];

  /**
   * `detachOnClose`: a console session, whose process is the attaching tool; when the client's
   * socket closes, the tool is ended.
   */
  constructor(readonly interactive: boolean, private detachOnClose = false) {
    const fds = interactive ? ["0", "control"] : ["0", "1", "2", "control"];
    this.secrets = Object.fromEntries(fds.map((fd) => [fd, secret()]));
    this.required = interactive ? fds : ["0", "1", "2"];
  }

  /** Upgrades a websocket request carrying one of the secrets; undefined if it carries none. */
  connect(given: string, upgrade: UpgradeWebSocket): Response | undefined {
    const fd = Object.entries(this.secrets).find(([, s]) => s === given)?.[0];
    if (fd === undefined || this.#sockets.has(fd) || this.#closed) return undefined;
    const { socket, response } = upgrade();
    socket.binaryType = "arraybuffer";
    this.#sockets.set(fd, socket);
    // Handlers go on at once: stdin and its end can arrive before the other sockets connect.
    if (fd === "0") {
      socket.onmessage = (e) => {
        if (typeof e.data === "string") {
          if (e.data === "" && !this.interactive) this.#endStdin();
          return;
        }
        this.#input(new Uint8Array(e.data as ArrayBuffer));
      };
      socket.onclose = () => this.#endStdin();
      socket.onerror = () => this.#endStdin();
    } else if (fd === "control") {
      socket.onmessage = (e) => {
        if (typeof e.data !== "string") return;
        try {
          this.#control(JSON.parse(e.data));
        } catch { /* not a control message */ }
      };
      // Clients detach from a console by closing its control socket.
      if (this.detachOnClose) socket.onclose = () => this.#endStdin();
    }
    socket.onopen = () => {
      this.#opened.add(fd);
      if (this.required.every((r) => this.#opened.has(r))) this.#ready();
    };
    return response;
  }

  /**
   * Waits for the sockets the command needs, runs it, pumps its streams, returns its exit code.
   * A `control` socket that connects later still carries signals and resizes.
   */
  async run(spawn: () => Promise<ExecProcess>, signal?: AbortSignal): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("Timed out waiting for the exec websockets to connect")),
        CONNECT_TIMEOUT_MS,
      );
    });
    try {
      await Promise.race([this.#readyPromise, timeout]);
    } catch (err) {
      this.closeAll();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    let proc: ExecProcess;
    try {
      proc = await spawn();
    } catch (err) {
      this.closeAll();
      throw err;
    }
    this.#proc = proc;
    signal?.addEventListener("abort", () => void proc.signal(9));
    if (this.detachOnClose && this.#stdinEnded) proc.kill();
    this.#stdinWriter = proc.stdin.getWriter();
    for (const chunk of this.#stdin.splice(0)) this.#stdinWriter.write(chunk).catch(() => {});
    if (this.#stdinEnded) this.#stdinWriter.close().catch(() => {});
    for (const c of this.#controls.splice(0)) this.#control(c);
    const pumps = [this.#pump(proc.stdout, this.interactive ? "0" : "1")];
    if (proc.stderr) pumps.push(this.#pump(proc.stderr, "2"));
    const code = await proc.status;
    // Output still in flight is delivered; a background child that keeps the pipe open (`sleep
    // 30 &`) does not hold the session after the command itself has exited.
    let grace: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(pumps),
      new Promise<void>((r) => grace = setTimeout(r, OUTPUT_GRACE_MS)),
    ]);
    clearTimeout(grace);
    for (const reader of this.#readers) reader.cancel().catch(() => {});
    await Promise.all(pumps);
    this.closeAll();
    return code;
  }

  #input(chunk: Uint8Array): void {
    if (this.#stdinEnded) return;
    if (this.#stdinWriter) this.#stdinWriter.write(chunk).catch(() => {});
    else this.#stdin.push(chunk);
  }

  #endStdin(): void {
    if (this.#stdinEnded) return;
    this.#stdinEnded = true;
    if (this.detachOnClose) this.#proc?.kill();
    // An interactive session's terminal stays open until the command exits.
    if (this.#stdinWriter && !this.interactive) this.#stdinWriter.close().catch(() => {});
  }

  #control(msg: Control): void {
    if (!this.#proc) {
      this.#controls.push(msg);
      return;
    }
    if (msg.command === "window-resize") {
      this.#proc.resize(Number(msg.args.width), Number(msg.args.height));
    } else if (msg.command === "signal" && Number.isInteger(msg.signal)) {
      void this.#proc.signal(msg.signal);
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>, fd: string): Promise<void> {
    const socket = this.#sockets.get(fd);
    const reader = stream.getReader();
    this.#readers.push(reader);
    while (true) {
      const { value: chunk, done } = await reader.read().catch(() => ({
        value: undefined,
        done: true,
      }));
      if (done || !chunk) break;
      if (socket?.readyState !== WebSocket.OPEN) continue; // keep draining: never block the command
      socket.send(chunk);
      while (socket.readyState === WebSocket.OPEN && socket.bufferedAmount > HIGH_WATER) {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    if (socket?.readyState === WebSocket.OPEN) {
      socket.send("");
      // Let the frames leave before the close.
      while (socket.readyState === WebSocket.OPEN && socket.bufferedAmount > 0) {
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  }

  closeAll(): void {
    this.#closed = true;
    for (const s of this.#sockets.values()) {
      try {
        if (s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING) s.close();
      } catch { /* already closed */ }
    }
  }
}
