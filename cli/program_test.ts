import assert from "node:assert/strict";
import { buildProgram, COMMAND_GROUPS, commandWord } from "./program.ts";
import { CliContext } from "./context.ts";

const deps = { runDaemon: () => Promise.resolve(), runHub: () => Promise.resolve() };

Deno.test("each command group lists exactly the top-level names and aliases it defines", async () => {
  for (const group of COMMAND_GROUPS) {
    const defined = (await group.load(new CliContext(), deps)).flatMap((
      c,
    ) => [c.name(), ...c.aliases()]);
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
    "copy",
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
  // Every name but the aliases (ls, rm, move, mv, cp), and the daemon.
  assert.equal(all.length, 1 + COMMAND_GROUPS.reduce((n, g) => n + g.names.length, 0) - 5);
  assert.deepEqual(await names(["lst"]), all);
});

/** The modules `root` loads when it runs, with what loads each: type-only imports are left out. */
async function runtimeGraph(root: string): Promise<Map<string, string>> {
  const url = new URL(root, import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", url.pathname],
    stdout: "piped",
  }).output();
  assert.ok(out.success, "deno info failed");
  const info: {
    redirects: Record<string, string>;
    modules: { specifier: string; dependencies?: { code?: { specifier: string } }[] }[];
  } = JSON.parse(new TextDecoder().decode(out.stdout));
  const deps = new Map(info.modules.map((m) => [m.specifier, m.dependencies ?? []]));
  const from = new Map<string, string>();
  const todo = [url.href];
  while (todo.length > 0) {
    const at = todo.pop()!;
    for (const dep of deps.get(at) ?? []) {
      if (!dep.code) continue;
      const next = info.redirects[dep.code.specifier] ?? dep.code.specifier;
      if (next === url.href || from.has(next)) continue;
      from.set(next, at);
      todo.push(next);
    }
  }
  return from;
}

Deno.test("the command line never loads zod: it imports the contract's answer types as types", async () => {
  const graph = await runtimeGraph("./program.ts");
  assert.ok([...graph.keys()].some((s) => s.endsWith("/cli/instances.ts")), "the graph is partial");
  for (const module of graph.keys()) {
    if (!/^npm:\/?zod@/.test(module)) continue;
    const chain = [module];
    while (graph.has(chain[0])) chain.unshift(graph.get(chain[0])!);
    const root = new URL("..", import.meta.url).href;
    assert.fail(`zod is loaded: ${chain.map((m) => m.replace(root, "")).join(" → ")}`);
  }
});
