/** outpost's entry point: the only place that exits the process. */
import { HELPER_SUBCOMMAND } from "./drivers/forkfile/protocol.ts";

async function main(): Promise<number> {
  // A compiled outpost runs its own confined file helper through a hidden subcommand; nothing
  // else of the program is loaded for it.
  if (Deno.args[0] === HELPER_SUBCOMMAND) {
    const { helperMain } = await import("./drivers/forkfile/helper.ts");
    return helperMain(Deno.args.slice(1));
  }
  const { CommanderError } = await import("@commander-js/extra-typings");
  const { buildProgram } = await import("./cli/program.ts");
  const { program, ctx } = buildProgram();
  try {
    await program.parseAsync(Deno.args, { from: "user" });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed help, the version or its own one-line message already.
      return err.exitCode === 0 ? 0 : 1;
    }
    console.error(`Error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    ctx.close();
  }
}

if (import.meta.main) Deno.exit(await main());
