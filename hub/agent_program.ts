/**
 * The agent program the hub hands out: the source tree it runs from (what `install.sh` installs),
 * as a gzipped tarball with its sha256, and the install script a fresh host pipes to `sh`. Both
 * are made once per hub start into the state dir; hosts download the tarball over the pinned TLS
 * connection and check its sha256 before anything runs.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { VERSION } from "../contract/version.ts";

/** The source tree this process runs from (the checkout, or an installed prefix). */
export const SOURCE_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

export interface AgentProgram {
  /** The tarball's path. */
  file: string;
  sha256: string;
  size: number;
  version: string;
}

/** Packs the source tree into `dir` (excluding git, modules and build output). */
export async function packAgent(dir: string, root = SOURCE_ROOT): Promise<AgentProgram> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, "outpost-agent.tar.gz");
  const tmp = `${file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const out = await new Deno.Command("tar", {
    args: [
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--exclude=./.git",
      "--exclude=./node_modules",
      "--exclude=./dist",
      "--exclude=./.ci",
      "--exclude=./.install.json",
      "-czf",
      tmp,
      "-C",
      root,
      ".",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(
      `Cannot pack the agent program: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  await Deno.rename(tmp, file);
  const bytes = await Deno.readFile(file);
  return {
    file,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    size: bytes.byteLength,
    version: VERSION,
  };
}

/** A value for a single-quoted shell word. */
function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The script `curl -fsSLk --pinnedpubkey PIN https://HUB/install.sh | sh -s -- --token T` runs:
 * it fetches the agent program from the same pinned hub, checks its sha256, installs it with its
 * own `install.sh` (apt packages, Deno, the service) and enrolls the host.
 */
export function installScript(opts: { url: string; pin: string; program: AgentProgram }): string {
  return `#!/bin/sh
# outpost: install the agent from the hub at ${opts.url} and enroll this host. Run as root:
#   curl -fsSLk --pinnedpubkey '${opts.pin}' ${opts.url}/install.sh | sh -s -- --token TOKEN [--name NAME]
# Options: --token T (required), --name NAME, --prefix DIR (default /opt/outpost),
# --bin PATH (default /usr/local/bin/outpost), --state-dir DIR (default /var/lib/outpost).
set -eu
HUB=${shellQuote(opts.url)}
PIN=${shellQuote(opts.pin)}
SHA256=${shellQuote(opts.program.sha256)}
TOKEN=
NAME=
PREFIX=\${OUTPOST_PREFIX:-/opt/outpost}
BIN=\${OUTPOST_BIN:-/usr/local/bin/outpost}
STATE_DIR=\${OUTPOST_DIR:-/var/lib/outpost}
die() { echo "outpost install: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --token) TOKEN=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --state-dir) STATE_DIR=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$TOKEN" ] || die "give the join token: sh -s -- --token TOKEN"
[ "$(id -u)" -eq 0 ] || die "run as root"
command -v curl >/dev/null || die "curl is needed"
command -v bash >/dev/null || die "bash is needed"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
curl -fsSLk --pinnedpubkey "$PIN" "$HUB/fleet/v1/agent.tar.gz" -o "$TMP/agent.tar.gz" ||
  die "cannot download the agent from $HUB"
echo "$SHA256  $TMP/agent.tar.gz" | sha256sum -c - >/dev/null 2>&1 ||
  die "the agent downloaded from $HUB does not have the expected sha256: not installing"
mkdir "$TMP/src"
tar -xzf "$TMP/agent.tar.gz" -C "$TMP/src"
OUTPOST_PREFIX="$PREFIX" OUTPOST_BIN="$BIN" OUTPOST_BUILD="$SHA256" \\
  bash "$TMP/src/install.sh" --state-dir "$STATE_DIR" --no-image
if [ -n "$NAME" ]; then
  OUTPOST_DIR="$STATE_DIR" "$BIN" enroll "$HUB" --token "$TOKEN" --name "$NAME"
else
  OUTPOST_DIR="$STATE_DIR" "$BIN" enroll "$HUB" --token "$TOKEN"
fi
`;
}
