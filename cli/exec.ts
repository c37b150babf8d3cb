/** `outpost exec NAME -- CMD...`: runs a command, forwards its output and exit code. */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Operation } from "../api/client.ts";
import { type CliContext, collect, parseIntOption, parseKeyValues } from "./context.ts";

export function execCommand(ctx: CliContext): CommandUnknownOpts {
  return new Command("exec")
    .description("Run a command in an instance; its output and exit code become outpost's")
    .argument("<name>", "Instance name")
    .argument("<command...>", "Command and arguments (after --)")
    .option("--env <key=value>", "Environment variable (repeatable)", collect)
    .option("--cwd <dir>", "Working directory in the instance")
    .option("--user <uid>", "User id to run as", parseIntOption("user"))
    .option("--group <gid>", "Group id to run as", parseIntOption("group"))
    .action(async (name, command, opts) => {
      const path = `/1.0/instances/${encodeURIComponent(name)}`;
      const op = await ctx.client.run("POST", `${path}/exec`, {
        body: {
          command,
          environment: parseKeyValues(opts.env ?? [], "environment variable"),
          "wait-for-websocket": false,
          "record-output": true,
          interactive: false,
          cwd: opts.cwd,
          user: opts.user,
          group: opts.group,
        },
      }) as Operation;
      const meta = op.metadata ?? {};
      const output = (meta.output ?? {}) as Record<string, string>;
      for (const [fd, sink] of [["1", Deno.stdout], ["2", Deno.stderr]] as const) {
        const url = output[fd];
        if (!url) continue;
        const res = await ctx.client.fetch("GET", url);
        const data = new Uint8Array(await res.arrayBuffer());
        for (let off = 0; off < data.length;) off += sink.writeSync(data.subarray(off));
        await ctx.client.fetch("DELETE", url).then((r) => r.body?.cancel());
      }
      ctx.exitCode = Number(meta.return ?? 0);
    });
}
