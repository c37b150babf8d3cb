/** The `outpost` command line: one module per command group, assembled here. */
import { Command } from "@commander-js/extra-typings";
import { VERSION } from "../contract/version.ts";
import { configCommand } from "./config.ts";
import { consoleCommand } from "./console.ts";
import { CliContext } from "./context.ts";
import { execCommand } from "./exec.ts";
import { fileCommand } from "./files.ts";
import { imageCommand } from "./images.ts";
import { instanceCommands } from "./instances.ts";
import { monitorCommand } from "./monitor.ts";
import { snapshotCommand } from "./snapshots.ts";

/** What the command line cannot do itself: `main.ts` hands in the daemon (the CLI never loads it). */
export interface ProgramDeps {
  runDaemon(stateDir: string): Promise<void>;
}

export function buildProgram(deps: ProgramDeps): { program: Command; ctx: CliContext } {
  const program = new Command("outpost")
    .description(
      "outpost: system containers (LXC) on this host, driven through an Incus-compatible API",
    )
    .version(VERSION)
    .option(
      "--state-dir <dir>",
      "The daemon's state dir (env OUTPOST_DIR, default /var/lib/outpost)",
    )
    .showHelpAfterError()
    .exitOverride();
  const ctx = new CliContext(() => program.opts().stateDir);

  program.command("daemon")
    .description("Run the outpost daemon in the foreground (serves DIR/unix.socket)")
    .action(() => deps.runDaemon(ctx.stateDir));

  for (
    const cmd of [
      ...instanceCommands(ctx),
      execCommand(ctx),
      consoleCommand(ctx),
      fileCommand(ctx),
      snapshotCommand(ctx),
      configCommand(ctx),
      imageCommand(ctx),
      monitorCommand(ctx),
    ]
  ) {
    program.addCommand(cmd);
  }
  // Subcommands report errors the same way as the program (main.ts prints them).
  const propagate = (cmd: Command | ReturnType<Command["command"]>) => {
    for (const sub of cmd.commands) {
      sub.exitOverride().showHelpAfterError(false);
      propagate(sub as Command);
    }
  };
  propagate(program);
  return { program, ctx };
}
