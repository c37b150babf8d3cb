/**
 * Commands in a container through `lxc-attach`: pipes for non-interactive commands, a PTY
 * (node-pty, loaded only when needed) for interactive ones. Signals go to the attached command
 * (lxc-attach's child) with `pkill -P`, since lxc-attach does not forward them.
 */
import type { ExecOptions, ExecProcess, ExecRequest } from "../driver.ts";
import type { Runner } from "../runner.ts";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The environment a command gets by default (as Incus), then the instance's, then the request's. */
export function execEnvironment(req: ExecRequest, interactive: boolean): Record<string, string> {
  const uid = req.user ?? 0;
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOME: uid === 0 ? "/root" : "/",
    LANG: "C.UTF-8",
  };
  if (uid === 0) env.USER = "root";
  if (interactive) env.TERM = "xterm";
  return { ...env, ...req.environment };
}

/**
 * How to start a command: lxc-attach keeps its own working directory when the same path exists in
 * the container, so a directory that also exists on the host is simply lxc-attach's cwd; any other
 * directory needs a `cd` by a shell in the container (`shell` says whether it has one).
 */
export function attachPlan(
  lxcPath: string,
  name: string,
  req: ExecRequest,
  env: Record<string, string>,
  shell: boolean,
  hostHasDir: (path: string) => boolean,
): { argv: string[]; cwd: string } {
  const argv = ["lxc-attach", "-P", lxcPath, "-n", name, "--clear-env"];
  if (req.user !== undefined) argv.push("-u", String(req.user));
  if (req.group !== undefined) argv.push("-g", String(req.group));
  for (const [k, v] of Object.entries(env)) argv.push("-v", `${k}=${v}`);
  argv.push("--");
  const cwd = req.cwd || env.HOME || "/";
  if (cwd.startsWith("/") && hostHasDir(cwd)) return { argv: [...argv, ...req.command], cwd };
  if (shell) argv.push("/bin/sh", "-c", 'cd -- "$0" 2>/dev/null || cd /; exec "$@"', cwd);
  return { argv: [...argv, ...req.command], cwd: "/" };
}

function signaller(runner: Runner, pid: number) {
  return async (signo: number) => {
    await runner.run(["pkill", `--signal=${signo}`, "-P", String(pid)], { allowFailure: true });
  };
}

export function spawnPiped(runner: Runner, argv: string[], cwd: string): ExecProcess {
  runner.calls++;
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return {
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    resize: () => {},
    signal: signaller(runner, child.pid),
    kill: () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
    },
    status: child.status.then((s) => s.code),
  };
}

interface Pty {
  pid: number;
  onData(fn: (data: Uint8Array | string) => void): void;
  onExit(fn: (e: { exitCode: number; signal?: number }) => void): void;
  write(data: Uint8Array | string): void;
  resize(cols: number, rows: number): void;
  kill(signal?: string): void;
}

/** Spawns `argv` on a new PTY; lxc-attach then gives the command a PTY inside the container. */
export async function spawnPty(
  runner: Runner,
  argv: string[],
  cwd: string,
  opts: ExecOptions,
): Promise<ExecProcess> {
  runner.calls++;
  const { spawn } = await import("@lydell/node-pty");
  const pty = spawn(argv[0], argv.slice(1), {
    name: "xterm",
    cols: opts.width || 80,
    rows: opts.height || 24,
    cwd,
    env: { PATH: Deno.env.get("PATH") ?? DEFAULT_PATH },
    encoding: null,
  }) as unknown as Pty;
  let out!: ReadableStreamDefaultController<Uint8Array>;
  let closed = false;
  const stdout = new ReadableStream<Uint8Array>({ start: (c) => void (out = c) });
  pty.onData((data) => {
    if (!closed) {
      out.enqueue(typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data));
    }
  });
  const status = new Promise<number>((resolve) => {
    pty.onExit(({ exitCode, signal }) => {
      closed = true;
      out.close();
      resolve(signal ? 128 + signal : exitCode);
    });
  });
  return {
    pid: pty.pid,
    stdin: new WritableStream<Uint8Array>({
      write: (chunk) => {
        if (!closed) pty.write(chunk);
      },
    }),
    stdout,
    resize: (w, h) => {
      if (!closed && w > 0 && h > 0) pty.resize(w, h);
    },
    signal: signaller(runner, pty.pid),
    // Through the `kill` tool: Deno lets a program with a narrowed --allow-run signal only the
    // children it spawned itself, and node-pty's child is spawned natively.
    kill: () => {
      if (!closed) void runner.run(["kill", "-TERM", String(pty.pid)], { allowFailure: true });
    },
    status,
  };
}
