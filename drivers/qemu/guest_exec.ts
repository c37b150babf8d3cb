/**
 * Exec and console plumbing for VMs: a command through the guest agent shaped as an
 * `ExecProcess` (stdin is gathered, the command runs, its output arrives when it exits), and the
 * serial console socket as a stream.
 */
import { BadRequest } from "../../contract/errors.ts";
import type { ExecProcess, ExecRequest } from "../driver.ts";
import type { QgaClient } from "./qga.ts";

const DEFAULT_ENV = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/root",
  USER: "root",
  LANG: "C.UTF-8",
};

/** The guest argv: the agent has no working directory option, so a shell changes into it. */
export function guestArgv(req: ExecRequest): string[] {
  const cwd = req.cwd || "/root";
  return ["/bin/sh", "-c", 'cd -- "$0" 2>/dev/null || cd /; exec "$@"', cwd, ...req.command];
}

function streamOf(): {
  stream: ReadableStream<Uint8Array>;
  push(b: Uint8Array): void;
  end(): void;
} {
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
  return {
    stream,
    push: (b) => {
      if (b.length > 0) ctl.enqueue(b);
    },
    end: () => ctl.close(),
  };
}

/**
 * Runs a command through the guest agent. stdin is collected until it is closed (the agent takes
 * input whole), then the command runs; stdout and stderr arrive when it exits.
 */
export function guestExecProcess(qga: QgaClient, req: ExecRequest): ExecProcess {
  if ((req.user ?? 0) !== 0 || (req.group ?? 0) !== 0) {
    throw new BadRequest(
      "The guest agent runs commands as root: --user/--group are not supported in VMs",
    );
  }
  const input: Uint8Array[] = [];
  let inputDone!: () => void;
  const inputClosed = new Promise<void>((r) => inputDone = r);
  const out = streamOf();
  const err = streamOf();
  let guestPid = -1;
  const status = (async () => {
    await inputClosed;
    const total = input.reduce((n, b) => n + b.length, 0);
    const bytes = new Uint8Array(total);
    let off = 0;
    for (const b of input) {
      bytes.set(b, off);
      off += b.length;
    }
    try {
      const { pid } = await qga.exec(guestArgv(req)[0], guestArgv(req).slice(1), {
        env: { ...DEFAULT_ENV, ...req.environment },
        input: total > 0 ? bytes : undefined,
      });
      guestPid = pid;
      for (;;) {
        const st = await qga.execStatus(pid);
        if (st.exited) {
          out.push(st.stdout);
          err.push(st.stderr);
          return st.signal ? 128 + st.signal : st.exitCode ?? 0;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (e) {
      err.push(new TextEncoder().encode(`${e instanceof Error ? e.message : e}\n`));
      return 1;
    } finally {
      out.end();
      err.end();
    }
  })();
  return {
    pid: -1,
    stdin: new WritableStream<Uint8Array>({
      write: (chunk) => void input.push(chunk.slice()),
      close: () => inputDone(),
      abort: () => inputDone(),
    }),
    stdout: out.stream,
    stderr: err.stream,
    resize: () => {},
    signal: async (signo) => {
      if (guestPid > 0) await qga.run(["kill", `-${signo}`, String(guestPid)]).catch(() => {});
    },
    kill: () => inputDone(),
    status,
  };
}

/** The serial console's unix socket as a process-like stream (one client at a time). */
export async function consoleProcess(path: string): Promise<ExecProcess> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    throw new BadRequest("The VM's console is not available (is it running?)");
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const out = streamOf();
  const status = (async () => {
    try {
      for await (const chunk of conn.readable) out.push(chunk);
    } catch { /* closed */ }
    out.end();
    close();
    return 0;
  })();
  return {
    pid: -1,
    stdin: new WritableStream<Uint8Array>({
      write: async (chunk) => {
        if (!closed) await conn.write(chunk).catch(() => {});
      },
    }),
    stdout: out.stream,
    resize: () => {},
    signal: () => Promise.resolve(),
    kill: close,
    status,
  };
}
