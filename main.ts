/** outpost's entry point: the only place that exits the process. */
import { CommanderError } from "@commander-js/extra-typings";
import { buildProgram } from "./cli/program.ts";

async function main(): Promise<number> {
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
