/** The global options every command line may carry, apart from its command's own words. */

/** `--state-dir DIR` / `--state-dir=DIR` taken out of `args`; the other words in order. */
export function splitGlobalOptions(args: string[]): { stateDir?: string; rest: string[] } {
  const rest: string[] = [];
  let stateDir: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--state-dir" && i + 1 < args.length) stateDir = args[++i];
    else if (arg.startsWith("--state-dir=")) stateDir = arg.slice("--state-dir=".length);
    else rest.push(arg);
  }
  return { stateDir, rest };
}
