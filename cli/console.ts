/**
 * `outpost console NAME`: attaches the terminal to an instance's console (detach with ctrl+a q;
 * ctrl+a a sends a literal ctrl+a). `--show-log` prints the console output kept since start.
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { instanceUrl } from "../contract/urls.ts";
import { openOperationSocket } from "../contract/ws_client.ts";
import { type CliContext, UsageError } from "./context.ts";

const CTRL_A = 0x01;

/** Splits typed input into bytes to send and a detach request (ctrl+a q). */
export class EscapeFilter {
  #pending = false;

  feed(input: Uint8Array): { send: Uint8Array; detach: boolean } {
    const out: number[] = [];
    for (const b of input) {
      if (this.#pending) {
        this.#pending = false;
        if (b === 0x71 /* q */) return { send: new Uint8Array(out), detach: true };
        if (b === CTRL_A || b === 0x61 /* a */) out.push(CTRL_A);
        else out.push(CTRL_A, b);
      } else if (b === CTRL_A) {
        this.#pending = true;
      } else {
        out.push(b);
      }
    }
    return { send: new Uint8Array(out), detach: false };
  }
}

export function consoleCommand(ctx: CliContext): CommandUnknownOpts {
  return new Command("console")
    .description("Attach to an instance's console (detach with ctrl+a q)")
    .argument("<name>", "Instance name")
    .option("--show-log", "Print the console log instead of attaching")
    .action(async (name, opts) => {
      const path = `${instanceUrl(name)}/console`;
      if (opts.showLog) {
        const res = await ctx.client.fetch("GET", path);
        if (!res.ok) {
          const env = await res.json().catch(() => ({}));
          throw new UsageError(env.error ?? `HTTP ${res.status}`);
        }
        const data = new Uint8Array(await res.arrayBuffer());
        for (let off = 0; off < data.length;) off += Deno.stdout.writeSync(data.subarray(off));
        return;
      }
      const tty = Deno.stdin.isTerminal();
      const size = Deno.stdout.isTerminal() ? Deno.consoleSize() : { columns: 80, rows: 24 };
      const op = await ctx.client.start("POST", path, {
        body: { width: size.columns, height: size.rows, type: "console" },
      });
      const fds = (op.metadata?.fds ?? {}) as Record<string, string>;
      const control = await openOperationSocket(ctx.client, op.id, fds.control);
      const io = await openOperationSocket(ctx.client, op.id, fds["0"]);
      console.error("To detach from the console, press: <ctrl>+a q");
      if (tty) Deno.stdin.setRaw(true);
      const onResize = () => {
        const { columns, rows } = Deno.consoleSize();
        const resize = { width: String(columns), height: String(rows) };
        if (control.isOpen) {
          control.send(JSON.stringify({ command: "window-resize", args: resize })).catch(() => {});
        }
      };
      if (Deno.stdout.isTerminal()) Deno.addSignalListener("SIGWINCH", onResize);
      try {
        const closed = (async () => {
          try {
            for await (const msg of io) {
              if (msg.type !== "binary") continue;
              for (let off = 0; off < msg.data.length;) {
                off += Deno.stdout.writeSync(msg.data.subarray(off));
              }
            }
          } catch {
            // A broken socket ends the session like a close.
          }
        })();
        const typed = (async () => {
          const filter = new EscapeFilter();
          const buf = new Uint8Array(4096);
          while (true) {
            const n = await Deno.stdin.read(buf).catch(() => null);
            if (n === null) {
              // End of input (a pipe): keep showing output until the console closes.
              await closed;
              return;
            }
            const { send, detach } = filter.feed(buf.subarray(0, n));
            if (send.length > 0 && io.isOpen) await io.send(send).catch(() => {});
            if (detach) return;
          }
        })();
        await Promise.race([typed, closed]);
      } finally {
        if (tty) Deno.stdin.setRaw(false);
        if (Deno.stdout.isTerminal()) Deno.removeSignalListener("SIGWINCH", onResize);
        await Promise.all([io.close(), control.close()]);
      }
      await ctx.client.wait(op.id).catch(() => {});
      console.error("");
    });
}
