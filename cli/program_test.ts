import assert from "node:assert/strict";
import { buildProgram, COMMAND_GROUPS, commandWord } from "./program.ts";
import { CliContext } from "./context.ts";

const deps = { runDaemon: () => Promise.resolve() };

Deno.test("each command group lists exactly the top-level names and aliases it defines", async () => {
  for (const group of COMMAND_GROUPS) {
    const defined = (await group.load(new CliContext())).flatMap((c) => [c.name(), ...c.aliases()]);
    assert.deepEqual([...defined].sort(), [...group.names].sort());
  }
});

Deno.test("commandWord() skips global options and their values", () => {
  assert.equal(commandWord(["--state-dir", "/s", "list"]), "list");
  assert.equal(commandWord(["--state-dir=/s", "exec", "c", "--", "ls"]), "exec");
  assert.equal(commandWord(["--version"]), undefined);
});

Deno.test("a command line loads only its command's group; help and typos load them all", async () => {
  const names = async (argv: string[]) =>
    (await buildProgram(deps, argv)).program.commands.map((c) => c.name()).sort();
  assert.deepEqual(await names(["--version"]), ["daemon"]);
  assert.deepEqual(await names(["exec", "c", "--", "cat", "--version"]), ["daemon", "exec"]);
  assert.deepEqual(await names(["--state-dir", "/s", "ls"]), [
    "daemon",
    "delete",
    "info",
    "init",
    "launch",
    "list",
    "pause",
    "rename",
    "restart",
    "resume",
    "start",
    "stop",
  ]);
  const all = await names(["--help"]);
  assert.equal(all.length, 1 + COMMAND_GROUPS.reduce((n, g) => n + g.names.length, 0) - 2);
  assert.deepEqual(await names(["lst"]), all);
});
