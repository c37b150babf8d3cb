/**
 * Generates docs/config.md (from the config-key and device-type tables) and docs/cli.md (from the CLI's own help
 * texts). `deno task docs` writes them; `--check` fails if they are stale (the test suite runs it).
 */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { join } from "node:path";
import { configReference } from "../agent/config_keys.ts";
import { deviceReference } from "../drivers/device/device.ts";
import { networkReference } from "../agent/networks.ts";
import { buildProgram } from "../cli/program.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function cliReference(): Promise<string> {
  const { program } = await buildProgram({
    runDaemon: () => Promise.resolve(),
    runHub: () => Promise.resolve(),
  });
  const sections: string[] = [
    "# CLI reference",
    "",
    "Generated from the commands' own `--help` texts by `deno task docs`; do not edit by hand.",
    "",
  ];
  const walk = (cmd: CommandUnknownOpts, path: string[]) => {
    const full = [...path, cmd.name()].join(" ");
    cmd.configureOutput({ getOutHelpWidth: () => 100, getErrHelpWidth: () => 100 });
    sections.push(`## ${full}`, "", "```", cmd.helpInformation().trimEnd(), "```", "");
    for (const sub of cmd.commands) walk(sub as CommandUnknownOpts, [...path, cmd.name()]);
  };
  walk(program as unknown as CommandUnknownOpts, []);
  return sections.join("\n");
}

export async function generated(): Promise<Record<string, string>> {
  return {
    "docs/config.md": `${configReference()}\n${networkReference()}\n${deviceReference()}`,
    "docs/cli.md": await cliReference(),
  };
}

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  let stale = false;
  for (const [file, text] of Object.entries(await generated())) {
    const path = join(ROOT, file);
    const current = await Deno.readTextFile(path).catch(() => "");
    if (current === text) continue;
    if (check) {
      console.error(`${file} is stale: run "deno task docs"`);
      stale = true;
    } else {
      await Deno.writeTextFile(path, text);
      console.error(`wrote ${file}`);
    }
  }
  if (stale) Deno.exit(1);
}
