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

/** A word that may name a remote: `NAME:` then anything (`NAME` never holds `:`, `=` or `/`). */
const REMOTE_WORD = /^([A-Za-z0-9_.-]+):(.*)$/s;
/** A host of a hub remote, after the remote's `NAME:`. */
const HUB_HOST_WORD = /^([A-Za-z][A-Za-z0-9-]{0,62}):(.*)$/s;

/** `next`, when no other `kind` was named before; two different ones throw. */
function onlyOne(kind: string, before: string | undefined, next: string): string {
  if (before !== undefined && before !== next) {
    throw new Error(
      `The command line names two ${kind}s ("${before}" and "${next}"): one command runs on one ${kind}`,
    );
  }
  return next;
}

/** The commands whose words are never taken as `REMOTE:` (they name remotes themselves). */
function managesRemotes(rest: string[]): boolean {
  const words = rest.filter((a) => !a.startsWith("-"));
  return words[0] === "remote" || words[0] === "trust" ||
    (words[0] === "config" && words[1] === "trust");
}

/**
 * Takes the remote out of a command line's `REMOTE:NAME` and `REMOTE:` words (before a `--`),
 * where `isRemote` says which prefixes are remotes: `list edge:` → `list` on edge, `exec
 * edge:web -- ps` → `exec web -- ps` on edge. Every verb so takes remotes at once. Two different
 * remotes on one command line throw; `remote` and `config trust` command lines are left as
 * they are.
 */
export function selectRemote(
  args: string[],
  isRemote: (name: string) => boolean,
  isHub: (name: string) => boolean = () => false,
): { remote?: string; host?: string; args: string[] } {
  if (managesRemotes(splitGlobalOptions(args).rest)) return { args };
  let remote: string | undefined;
  let host: string | undefined;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (arg === "--state-dir") {
      out.push(arg, ...args.slice(i + 1, i + 2));
      i++;
      continue;
    }
    const m = REMOTE_WORD.exec(arg);
    if (!m || !isRemote(m[1])) {
      out.push(arg);
      continue;
    }
    remote = onlyOne("remote", remote, m[1]);
    let rest = m[2];
    if (isHub(remote)) {
      // Through a hub, the next part names the host: `hub:edge-1:web`, `hub:edge-1:`.
      const h = HUB_HOST_WORD.exec(rest);
      if (h) {
        host = onlyOne("host", host, h[1]);
        rest = h[2];
      }
    }
    if (rest !== "") out.push(rest);
  }
  return host === undefined ? { remote, args: out } : { remote, host, args: out };
}
