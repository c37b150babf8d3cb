/**
 * The command line and the API's read and exec paths, against what users compare them with, in
 * the same run: `outpost` as the installed launcher runs it (the prebuilt bundle, `deno task
 * bundle`) next to `deno eval 1`, the stock LXD client `lxc` against the same daemon, and raw
 * `lxc-attach`. Each figure is the median of a few rounds.
 */
import { join } from "node:path";
import { runtimeFlags } from "../scripts/permissions.ts";
import { HAS_LXC, ROOT, StockLxc, type TestDaemon } from "../tests/helpers.ts";

export const ROUNDS = Number(Deno.env.get("OUTPOST_BENCH_ROUNDS") ?? "10");

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median wall time of `fn` over ROUNDS runs (after one warm-up run). */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const xs: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    await fn();
    xs.push(performance.now() - t);
  }
  return median(xs);
}

/** Runs a command to its end; fails with its stderr when it fails. */
export async function sh(cmd: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A figure against another, with the ratio and the target it must meet. */
export function compare(what: string, ours: number, other: string, theirs: number, target = "") {
  const ratio = ours / theirs;
  console.log(
    `${what.padEnd(34)} ${ours.toFixed(1).padStart(7)} ms  vs ${other.padEnd(22)} ${
      theirs.toFixed(1).padStart(7)
    } ms  ratio ${ratio.toFixed(2)}${target ? `  (target ${target})` : ""}`,
  );
}

/** A figure against an absolute target. */
export function absolute(what: string, ours: number, target: number) {
  console.log(
    `${what.padEnd(34)} ${ours.toFixed(1).padStart(7)} ms  target <= ${target} ms  ${
      ours <= target ? "met" : "NOT met"
    }`,
  );
}

/** Builds the CLI bundle as install.sh does; returns the launcher's argv for a state dir. */
export async function launcher(): Promise<(dir: string) => string[]> {
  await sh(Deno.execPath(), ["task", "--quiet", "bundle"]);
  const bundle = join(ROOT, "dist", "cli", "main.js");
  const flags = runtimeFlags();
  return (dir) => [
    "run",
    "--quiet",
    "--no-prompt",
    "--no-config",
    "--no-lock",
    ...flags,
    bundle,
    "--state-dir",
    dir,
  ];
}

/**
 * `outpost --version`, `list` and `exec` against `deno eval 1` and the stock client; then what each
 * client spends beyond starting its runtime (`lxc --version` is the Go client's start-up), which
 * separates outpost's own cost from Deno's.
 */
export async function cliRows(d: TestDaemon, running: string): Promise<void> {
  const outpost = (await launcher())(d.dir);
  const deno = Deno.execPath();
  const version = await timed(() => sh(deno, [...outpost, "--version"]));
  const denoEval = await timed(() => sh(deno, ["eval", "1"]));
  compare("outpost --version", version, "deno eval 1", denoEval, "<= 1.5");
  if (!HAS_LXC) {
    console.log("(the stock lxc client is not installed: its rows are skipped)");
    return;
  }
  const lxc = await StockLxc.for(d);
  const lxcVersion = await timed(() => sh("lxc", ["--version"], lxc.env));
  const list = await timed(() => sh(deno, [...outpost, "list"]));
  const lxcList = await timed(() => sh("lxc", ["list"], lxc.env));
  compare("outpost list", list, "lxc list (same daemon)", lxcList, "<= 1.5");
  compare("  runtime floor: deno eval 1", denoEval, "lxc list (same daemon)", lxcList);
  compare(
    "  list beyond --version",
    list - version,
    "lxc's beyond --version",
    lxcList - lxcVersion,
  );
  const lxcExec = await timed(() => sh("lxc", ["exec", running, "--", "true"], lxc.env));
  const exec = await timed(() => sh(deno, [...outpost, "exec", running, "--", "true"]));
  compare("outpost exec c -- true", exec, "lxc exec (same daemon)", lxcExec, "<= 1.2");
  compare(
    "  exec beyond --version",
    exec - version,
    "lxc's beyond --version",
    lxcExec - lxcVersion,
  );
  const attach = await timed(() =>
    sh("lxc-attach", ["-P", d.lxcPath, "-n", running, "--clear-env", "--", "true"])
  );
  compare("stock lxc exec -- true", lxcExec, "lxc-attach -- true", attach, "<= 2.5");
  compare("  lxc exec beyond --version", lxcExec - lxcVersion, "lxc-attach -- true", attach);
  compare(
    "API exec true (record-output)",
    await timed(() =>
      d.api.run("POST", `/1.0/instances/${running}/exec`, {
        body: { command: ["true"], "record-output": true },
      })
    ),
    "lxc-attach -- true",
    attach,
    "<= 1.5",
  );
}

/** Listing with many instances running: the API, `outpost list` and the stock client's. */
export async function listRows(d: TestDaemon, count: number): Promise<void> {
  absolute(
    `recursion=1, ${count} running`,
    await timed(() => d.api.get("/1.0/instances?recursion=1")),
    20,
  );
  absolute(
    `recursion=2, ${count} running`,
    await timed(() => d.api.get("/1.0/instances?recursion=2")),
    60,
  );
  if (!HAS_LXC) return;
  const outpost = (await launcher())(d.dir);
  const lxc = await StockLxc.for(d);
  compare(
    `outpost list, ${count} running`,
    await timed(() => sh(Deno.execPath(), [...outpost, "list"])),
    "lxc list (same daemon)",
    await timed(() => sh("lxc", ["list"], lxc.env)),
    "<= 1.5",
  );
}
