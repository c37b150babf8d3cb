/**
 * The `outpost` command line: one module per command group, assembled here. Only the module of
 * the command being run is loaded (the start-up of a command line is most of its run time); help
 * and unknown commands load them all.
 */
import { Command, type CommandUnknownOpts } from "@commander-js/extra-typings";
import { VERSION } from "../contract/version.ts";
import { selectRemote, splitGlobalOptions } from "./argv.ts";
import { CliContext } from "./context.ts";
import type { HubRunOptions } from "./hub.ts";

/** What the command line cannot do itself: `main.ts` hands in the daemon (the CLI never loads it). */
export interface ProgramDeps {
  runDaemon(stateDir: string, opts?: { noNetwork?: boolean }): Promise<void>;
  runHub(opts: HubRunOptions): Promise<void>;
}

type Load = (ctx: CliContext, deps: ProgramDeps) => Promise<CommandUnknownOpts[]>;

/** Each command group: the top-level names (and aliases) it defines, and how to load it. */
export const COMMAND_GROUPS: { names: readonly string[]; load: Load }[] = [
  {
    names: [
      "launch",
      "init",
      "list",
      "ls",
      "info",
      "rename",
      "move",
      "mv",
      "copy",
      "cp",
      "delete",
      "rm",
      "start",
      "stop",
      "restart",
      "pause",
      "resume",
    ],
    load: async (ctx) => (await import("./instances.ts")).instanceCommands(ctx),
  },
  { names: ["exec"], load: async (ctx) => [(await import("./exec.ts")).execCommand(ctx)] },
  {
    names: ["console"],
    load: async (ctx) => [(await import("./console.ts")).consoleCommand(ctx)],
  },
  { names: ["file"], load: async (ctx) => [(await import("./files.ts")).fileCommand(ctx)] },
  {
    names: ["snapshot"],
    load: async (ctx) => [(await import("./snapshots.ts")).snapshotCommand(ctx)],
  },
  { names: ["config"], load: async (ctx) => [(await import("./config.ts")).configCommand(ctx)] },
  {
    names: ["export", "import"],
    load: async (ctx) => (await import("./backups.ts")).backupCommands(ctx),
  },
  {
    names: ["storage"],
    load: async (ctx) => [(await import("./storage.ts")).storageCommand(ctx)],
  },
  {
    names: ["network"],
    load: async (ctx) => [(await import("./networks.ts")).networkCommand(ctx)],
  },
  {
    names: ["profile"],
    load: async (ctx) => [(await import("./profiles.ts")).profileCommand(ctx)],
  },
  { names: ["trust"], load: async (ctx) => [(await import("./trust.ts")).trustCommand(ctx)] },
  {
    names: ["remote"],
    load: async (ctx) => [(await import("./remote.ts")).remoteCommand(ctx)],
  },
  {
    names: ["hub"],
    load: async (ctx, deps) => [(await import("./hub.ts")).hubCommand(ctx, deps.runHub)],
  },
  {
    names: ["enroll", "fleet"],
    load: async (ctx) => {
      const m = await import("./fleet.ts");
      return [m.enrollCommand(ctx), m.fleetCommand(ctx)];
    },
  },
  {
    names: ["image", "publish"],
    load: async (ctx) => {
      const m = await import("./images.ts");
      return [m.imageCommand(ctx), m.publishCommand(ctx)];
    },
  },
  {
    names: ["monitor"],
    load: async (ctx) => [(await import("./monitor.ts")).monitorCommand(ctx)],
  },
];

/** The command a command line names: its first word that is not a global option. */
export function commandWord(argv: string[]): string | undefined {
  return splitGlobalOptions(argv).rest.find((arg) => !arg.startsWith("-"));
}

/** The groups a command line needs (all of them without one: the docs generator). */
function groupsFor(argv?: string[]): typeof COMMAND_GROUPS {
  if (!argv) return COMMAND_GROUPS;
  const word = commandWord(argv);
  // `--version` needs no command; help and a mistyped command (which gets a suggestion) need
  // them all.
  if (word === undefined) {
    return argv.some((a) => a === "--version" || a === "-V") ? [] : COMMAND_GROUPS;
  }
  if (word === "daemon") return [];
  const named = COMMAND_GROUPS.filter((g) => g.names.includes(word));
  return named.length > 0 ? named : COMMAND_GROUPS;
}

/**
 * The program for a command line, its context and the words to parse: `REMOTE:` prefixes are
 * taken out of them and select the context's remote.
 */
export async function buildProgram(
  deps: ProgramDeps,
  argv?: string[],
): Promise<{ program: Command; ctx: CliContext; args: string[] }> {
  const program = new Command("outpost")
    .description(
      "outpost: system containers (LXC) on this host, driven through an Incus-compatible API",
    )
    .version(VERSION)
    .option(
      "--state-dir <dir>",
      "The daemon's state dir (env OUTPOST_DIR, default /var/lib/outpost)",
    )
    .addHelpText(
      "after",
      "\nREMOTE:NAME (or REMOTE: alone) in any command runs it on that remote; without one,\n" +
        'commands go to the default remote ("local": this host\'s daemon). See "outpost remote".',
    )
    .showHelpAfterError()
    .exitOverride();
  const ctx = new CliContext(() => program.opts().stateDir);
  const selected = argv
    ? selectRemote(argv, (name) => ctx.isRemote(name), (name) => ctx.isHubRemote(name))
    : { args: [] };
  ctx.remote = selected.remote;
  ctx.remoteHost = "host" in selected ? selected.host : undefined;

  program.command("daemon")
    .description("Run the outpost daemon in the foreground (serves DIR/unix.socket)")
    .option(
      "--no-network",
      "At the first start, make no default network (outpostbr0); env OUTPOST_NO_NETWORK=1 too",
    )
    .action((opts) => deps.runDaemon(ctx.stateDir, { noNetwork: opts.network === false }));

  for (const group of groupsFor(argv)) {
    for (const cmd of await group.load(ctx, deps)) program.addCommand(cmd);
  }
  // Subcommands report errors the same way as the program (main.ts prints them).
  const propagate = (cmd: Command | ReturnType<Command["command"]>) => {
    for (const sub of cmd.commands) {
      sub.exitOverride().showHelpAfterError(false);
      propagate(sub as Command);
    }
  };
  propagate(program);
  return { program, ctx, args: selected.args };
}
