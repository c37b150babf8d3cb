/** outpost's entry point: the only place that exits the process. */
import { splitGlobalOptions } from "./cli/argv.ts";
import { HELPER_SUBCOMMAND } from "./drivers/forkfile/protocol.ts";
import { UDP_RELAY_SUBCOMMAND } from "./drivers/device/udp_frame.ts";

async function runDaemon(stateDir: string, opts: { noNetwork?: boolean } = {}): Promise<void> {
  const daemon = await import("./daemon/daemon.ts");
  await daemon.runDaemon({ stateDir, noNetwork: opts.noNetwork });
}

async function runHub(opts: import("./cli/hub.ts").HubRunOptions): Promise<void> {
  const hub = await import("./hub/server.ts");
  await hub.runHub(opts);
}

async function main(): Promise<number> {
  // A compiled outpost runs its own confined file helper through a hidden subcommand; nothing
  // else of the program is loaded for it.
  if (Deno.args[0] === HELPER_SUBCOMMAND) {
    const { helperMain } = await import("./drivers/forkfile/helper.ts");
    return helperMain(Deno.args.slice(1));
  }
  // And the UDP half of its proxy devices (drivers/device/udp_relay.ts).
  if (Deno.args[0] === UDP_RELAY_SUBCOMMAND) {
    const { udpRelayMain } = await import("./drivers/device/udp_relay.ts");
    return await udpRelayMain(Deno.args.slice(1));
  }
  // The daemon is a long-lived process: it is started without the command line's modules, so
  // they never take memory in it. Anything but the plain forms goes through the CLI (and --help).
  const daemon = daemonInvocation(Deno.args);
  if (daemon !== null) {
    const { resolveStateDir } = await import("./contract/state_dir.ts");
    await runDaemon(resolveStateDir(daemon.stateDir), { noNetwork: daemon.noNetwork });
    return 0;
  }
  const { CommanderError } = await import("@commander-js/extra-typings");
  const { buildProgram } = await import("./cli/program.ts");
  let ctx: { exitCode: number; close(): void } | undefined;
  try {
    const built = await buildProgram({ runDaemon, runHub }, Deno.args);
    ctx = built.ctx;
    await built.program.parseAsync(built.args, { from: "user" });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed help, the version or its own one-line message already.
      return err.exitCode === 0 ? 0 : 1;
    }
    console.error(`Error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    ctx?.close();
  }
}

/**
 * `daemon`, `daemon --state-dir D`, `--state-dir D daemon` (or `--state-dir=D`), each with
 * `--no-network` or not: the state dir given (undefined when none) and the flag; null for every
 * other command line.
 */
export function daemonInvocation(
  args: string[],
): { stateDir: string | undefined; noNetwork: boolean } | null {
  const { stateDir, rest } = splitGlobalOptions(args);
  const noNetwork = rest.includes("--no-network");
  const words = rest.filter((a) => a !== "--no-network");
  if (words.length !== 1 || words[0] !== "daemon" || rest.length - words.length > 1) return null;
  return { stateDir, noNetwork };
}

if (import.meta.main) Deno.exit(await main());
