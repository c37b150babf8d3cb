/** `outpost monitor`: prints the daemon's events as they happen (until interrupted). */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { openUnixWebSocket } from "../contract/ws_client.ts";
import { type CliContext, UsageError } from "./context.ts";
import { renderYaml } from "./format.ts";

export function monitorCommand(ctx: CliContext): CommandUnknownOpts {
  return new Command("monitor")
    .description("Print events as they happen (operation, lifecycle, logging)")
    .option("--type <types>", "Comma-separated event types to show (default: all)")
    .option(
      "-f, --format <format>",
      "Output format: yaml, json (one event per line) or pretty",
      "yaml",
    )
    .option("--count <n>", "Exit after this many events", (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) {
        throw new UsageError(`Invalid count "${v}": expected a positive number`);
      }
      return n;
    })
    .action(async (opts) => {
      if (!["yaml", "json", "pretty"].includes(opts.format)) {
        throw new UsageError(`Unknown format "${opts.format}": use yaml, json or pretty`);
      }
      // Check the socket first, so a missing daemon is the usual one-line error.
      await ctx.client.get("/1.0");
      const query = opts.type ? `?type=${encodeURIComponent(opts.type)}` : "";
      const ws = openUnixWebSocket(ctx.client.socket, `/1.0/events${query}`);
      const enc = new TextEncoder();
      let seen = 0;
      await new Promise<void>((resolve, reject) => {
        ws.on(
          "unexpected-response",
          (
            _req: unknown,
            res: { statusCode?: number; on: (e: string, f: (d: Uint8Array) => void) => void },
          ) => {
            let body = "";
            res.on("data", (d) => body += new TextDecoder().decode(d));
            res.on("end", () => {
              try {
                reject(new UsageError(JSON.parse(body).error));
              } catch {
                reject(
                  new UsageError(`The daemon refused the event stream (HTTP ${res.statusCode})`),
                );
              }
            });
          },
        );
        ws.on("message", (data: Uint8Array) => {
          const event = JSON.parse(new TextDecoder().decode(data));
          let text: string;
          if (opts.format === "json") text = `${JSON.stringify(event)}\n`;
          else if (opts.format === "pretty") {
            const m = event.metadata ?? {};
            const what = event.type === "lifecycle"
              ? `${m.action} ${m.source}`
              : event.type === "operation"
              ? `${m.description}: ${m.status}${m.err ? ` (${m.err})` : ""}`
              : `${m.level}: ${m.message}`;
            text = `${event.timestamp} ${event.type} ${what}\n`;
          } else text = `${renderYaml(event)}\n`;
          Deno.stdout.writeSync(enc.encode(text));
          if (opts.count !== undefined && ++seen >= opts.count) {
            ws.close();
            resolve();
          }
        });
        ws.on("close", () => resolve());
        ws.on(
          "error",
          (err: Error) => reject(new UsageError(`Event stream failed: ${err.message}`)),
        );
      });
    });
}
