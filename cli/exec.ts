/**
 * `outpost exec NAME -- CMD...`: runs a command over the exec websockets, as the Incus client
 * does: an interactive PTY when stdin and stdout are terminals (raw mode, resizes on SIGWINCH),
 * pipes otherwise (stdin streamed, stdout/stderr kept apart, signals forwarded); `-t`/`-T` force
 * either. The command's exit code becomes outpost's.
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { instanceUrl } from "../contract/urls.ts";
import { type Dialer, openOperationSocket, type WebSocketClient } from "../contract/ws_client.ts";
import { type CliContext, collect, parseIntOption, parseKeyValues, UsageError } from "./context.ts";

const FORWARDED_SIGNALS: [Deno.Signal, number][] = [
  ["SIGINT", 2],
  ["SIGTERM", 15],
  ["SIGHUP", 1],
  ["SIGQUIT", 3],
  ["SIGUSR1", 10],
  ["SIGUSR2", 12],
];

/** Writes every binary message of `ws` to `sink` until an empty text message or the close. */
async function mirror(
  ws: WebSocketClient,
  sink: { writeSync(p: Uint8Array): number },
): Promise<void> {
  try {
    for await (const msg of ws) {
      if (msg.type === "text") {
        if (msg.data === "") return;
        continue;
      }
      for (let off = 0; off < msg.data.length;) off += sink.writeSync(msg.data.subarray(off));
    }
  } catch {
    // A broken socket ends the output like a close.
  }
}

/** Sends stdin to `ws` as binary messages, each once the last is written, then the end marker. */
async function pumpStdin(ws: WebSocketClient, endMarker: boolean): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    let n: number | null;
    try {
      n = await Deno.stdin.read(buf);
    } catch {
      n = null;
    }
    if (n === null) break;
    try {
      await ws.send(buf.subarray(0, n));
    } catch {
      return; // the session has ended
    }
  }
  if (endMarker && ws.isOpen) await ws.send("").catch(() => {});
}

/** Connects an operation's websockets (`secrets`, in order) at once; none stays open on failure. */
async function openAll(
  to: Dialer,
  opId: string,
  secrets: string[],
): Promise<WebSocketClient[]> {
  const tries = await Promise.allSettled(secrets.map((s) => openOperationSocket(to, opId, s)));
  const failed = tries.find((t) => t.status === "rejected");
  if (!failed) return tries.map((t) => (t as PromiseFulfilledResult<WebSocketClient>).value);
  for (const t of tries) if (t.status === "fulfilled") await t.value.close().catch(() => {});
  throw failed.reason;
}

/** Sends a control message (a resize, a signal), dropped if the control socket has closed. */
function sendControl(control: WebSocketClient, msg: unknown): void {
  if (control.isOpen) control.send(JSON.stringify(msg)).catch(() => {});
}

export function execCommand(ctx: CliContext): CommandUnknownOpts {
  return new Command("exec")
    .description("Run a command in an instance; its output and exit code become outpost's")
    .argument("<name>", "Instance name")
    .argument("<command...>", "Command and arguments (after --)")
    .option("--env <key=value>", "Environment variable (repeatable)", collect)
    .option("--cwd <dir>", "Working directory in the instance")
    .option("--user <uid>", "User id to run as", parseIntOption("user"))
    .option("--group <gid>", "Group id to run as", parseIntOption("group"))
    .option("-t, --force-interactive", "Force a PTY (interactive mode)")
    .option("-T, --force-noninteractive", "Force pipes (non-interactive mode)")
    .action(async (name, command, opts) => {
      if (opts.forceInteractive && opts.forceNoninteractive) {
        throw new UsageError("Use either -t or -T, not both");
      }
      const interactive = opts.forceInteractive ??
        (!opts.forceNoninteractive && Deno.stdin.isTerminal() && Deno.stdout.isTerminal());
      const environment = parseKeyValues(opts.env ?? [], "environment variable");
      const size = interactive && Deno.stdout.isTerminal() ? Deno.consoleSize() : undefined;
      if (interactive && !environment.TERM) environment.TERM = Deno.env.get("TERM") ?? "xterm";

      const op = await ctx.client.start(
        "POST",
        `${instanceUrl(name)}/exec`,
        {
          body: {
            command,
            environment,
            "wait-for-websocket": true,
            "record-output": false,
            interactive,
            width: size?.columns ?? 0,
            height: size?.rows ?? 0,
            cwd: opts.cwd,
            user: opts.user,
            group: opts.group,
          },
        },
      );
      const fds = (op.metadata?.fds ?? {}) as Record<string, string>;
      // The wait is asked at once, beside the websockets: the answer comes when the command ends.
      const finished = ctx.client.wait(op.id);
      finished.catch(() => {}); // read below; a failure to connect is reported first
      const [control, io, stdout, stderr] = await openAll(
        ctx.client,
        op.id,
        interactive ? [fds.control, fds["0"]] : [fds.control, fds["0"], fds["1"], fds["2"]],
      );
      const cleanups: (() => void)[] = [];
      let outputs: Promise<void>[];
      try {
        if (interactive) {
          if (Deno.stdin.isTerminal()) Deno.stdin.setRaw(true);
          cleanups.push(() => Deno.stdin.isTerminal() && Deno.stdin.setRaw(false));
          const onResize = () => {
            const { columns, rows } = Deno.consoleSize();
            sendControl(control, {
              command: "window-resize",
              args: { width: String(columns), height: String(rows) },
            });
          };
          if (Deno.stdout.isTerminal()) {
            Deno.addSignalListener("SIGWINCH", onResize);
            cleanups.push(() => Deno.removeSignalListener("SIGWINCH", onResize));
          }
          outputs = [mirror(io, Deno.stdout)];
          void pumpStdin(io, false);
        } else {
          outputs = [mirror(stdout, Deno.stdout), mirror(stderr, Deno.stderr)];
          void pumpStdin(io, true);
          for (const [sig, num] of FORWARDED_SIGNALS) {
            const forward = () => sendControl(control, { command: "signal", signal: num });
            Deno.addSignalListener(sig, forward);
            cleanups.push(() => Deno.removeSignalListener(sig, forward));
          }
        }
        const done = await finished;
        await Promise.race([Promise.all(outputs), new Promise((r) => setTimeout(r, 2000))]);
        ctx.exitCode = Number(done.metadata?.return ?? 0);
      } finally {
        for (const c of cleanups) c();
        await control.close();
      }
    });
}
