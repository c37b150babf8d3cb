/**
 * The one place drivers run host commands. Tests and benchmarks can observe every argv through
 * `onRun`, and failures carry the command's stderr in a readable message.
 */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The undecoded output, for commands whose output is data (exec). */
  raw: { stdout: Uint8Array; stderr: Uint8Array };
}

export interface RunOptions {
  stdin?: string | Uint8Array;
  env?: Record<string, string>;
  clearEnv?: boolean;
  /** Don't throw on a non-zero exit code. */
  allowFailure?: boolean;
  signal?: AbortSignal;
  cwd?: string;
}

export class CommandError extends Error {
  constructor(readonly argv: string[], readonly result: RunResult) {
    const why = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-3).join("; ");
    super(`${argv[0]} failed (exit ${result.code})${why ? `: ${why}` : ""}`);
  }
}

export type RunHook = (argv: string[]) => void;

export class Runner {
  #hooks = new Set<RunHook>();
  calls = 0;

  /** Observes every command (for tests and benchmarks); returns the unsubscribe function. */
  onRun(hook: RunHook): () => void {
    this.#hooks.add(hook);
    return () => this.#hooks.delete(hook);
  }

  /**
   * Starts a command with piped stdio for callers that stream (file helpers); the caller owns
   * the child and must consume or cancel its outputs.
   */
  spawn(
    argv: string[],
    opts: { stdin?: boolean; env?: Record<string, string>; clearEnv?: boolean } = {},
  ): Deno.ChildProcess {
    return this.#spawn(argv, {
      stdin: opts.stdin ? "piped" : "null",
      env: opts.env,
      clearEnv: opts.clearEnv,
    });
  }

  #spawn(argv: string[], opts: Omit<Deno.CommandOptions, "args">): Deno.ChildProcess {
    this.calls++;
    for (const h of this.#hooks) h(argv);
    try {
      return new Deno.Command(argv[0], {
        ...opts,
        args: argv.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new Error(`Command "${argv[0]}" not found: is it installed?`);
      }
      throw err;
    }
  }

  async run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    const child = this.#spawn(argv, {
      stdin: opts.stdin === undefined ? "null" : "piped",
      env: opts.env,
      clearEnv: opts.clearEnv,
      signal: opts.signal,
      cwd: opts.cwd,
    });
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(
        typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
      )
        .catch(() => {});
      await w.close().catch(() => {});
    }
    // The streams are read one by one, not with child.output(): in Deno 2.9.6 output() keeps
    // ~115 KB of native memory per command, which a daemon running thousands of them never gets
    // back.
    const [stdout, stderr, status] = await Promise.all([
      new Response(child.stdout).bytes(),
      new Response(child.stderr).bytes(),
      child.status,
    ]);
    const dec = new TextDecoder();
    const result = {
      code: status.code,
      stdout: dec.decode(stdout),
      stderr: dec.decode(stderr),
      raw: { stdout, stderr },
    };
    if (result.code !== 0 && !opts.allowFailure) throw new CommandError(argv, result);
    return result;
  }
}
