/** `outpost monitor`: prints the daemon's events as they happen (until interrupted). */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { OutpostEvent } from "../contract/events.ts";
import {
  HandshakeError,
  openEvents,
  type WebSocketClient,
  WebSocketError,
} from "../contract/ws_client.ts";
import { type CliContext, UsageError } from "./context.ts";
import { renderYaml } from "./yaml.ts";

/** One line saying what an event is about. */
function describe(event: OutpostEvent): string {
  switch (event.type) {
    case "lifecycle":
      return `${event.metadata.action} ${event.metadata.source}`;
    case "operation": {
      const m = event.metadata;
      return `${m.description}: ${m.status}${m.err ? ` (${m.err})` : ""}`;
    }
    case "logging":
      return `${event.metadata.level}: ${event.metadata.message}`;
  }
}

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
      let ws: WebSocketClient;
      try {
        ws = await openEvents(ctx.client, opts.type);
      } catch (err) {
        if (err instanceof HandshakeError) {
          throw new UsageError(
            err.serverError ?? `The daemon refused the event stream (HTTP ${err.status})`,
          );
        }
        throw new UsageError(`Event stream failed: ${err instanceof Error ? err.message : err}`);
      }
      const enc = new TextEncoder();
      let seen = 0;
      try {
        for await (const msg of ws) {
          const data = msg.type === "text" ? msg.data : new TextDecoder().decode(msg.data);
          const event: OutpostEvent = JSON.parse(data);
          let text: string;
          if (opts.format === "json") text = `${JSON.stringify(event)}\n`;
          else if (opts.format === "pretty") {
            text = `${event.timestamp} ${event.type} ${describe(event)}\n`;
          } else text = `${renderYaml(event)}\n`;
          Deno.stdout.writeSync(enc.encode(text));
          if (opts.count !== undefined && ++seen >= opts.count) break;
        }
      } catch (err) {
        if (err instanceof WebSocketError) {
          throw new UsageError(`Event stream failed: ${err.message}`);
        }
        throw err;
      } finally {
        await ws.close();
      }
    });
}
