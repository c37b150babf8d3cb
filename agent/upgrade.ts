/**
 * Upgrades from the hub: the agent program is fetched from the hub this host enrolled with (over
 * the pinned TLS connection, with the host's certificate), its sha256 checked against the one the
 * hub asked for, unpacked, and installed by its own `install.sh` from a detached script that
 * outlives the daemon it restarts. Instances keep running throughout (a daemon restart never stops
 * them). If the new build does not come up, the script puts the old install back and starts it.
 * Either way it leaves `upgrade/result.json`, which the next daemon reports to the hub.
 *
 * Only an agent installed by install.sh (which writes `.install.json` beside the program) can be
 * upgraded this way; one run from a source checkout says so.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { z } from "zod";
import { BadRequest, Conflict } from "../contract/errors.ts";
import { type UpgradeResult, UpgradeResultSchema } from "../contract/fleet.ts";
import { FLEET_API } from "../contract/urls.ts";
import type { FleetRecord } from "./store.ts";
import { hubTransports } from "./fleet.ts";
import type { Runner } from "../drivers/runner.ts";

/** The program's own root (the install prefix, or a checkout). */
export const PROGRAM_ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The largest agent program a host downloads. */
const MAX_PROGRAM = 512 * 2 ** 20;

const InstallInfoSchema = z.object({
  prefix: z.string().min(1),
  bin: z.string().min(1),
  state_dir: z.string().min(1),
  build: z.string(),
});
export type InstallInfo = z.infer<typeof InstallInfoSchema>;

/** What install.sh recorded of this install, or undefined for a source checkout. */
export function installInfo(root = PROGRAM_ROOT): InstallInfo | undefined {
  try {
    const r = InstallInfoSchema.safeParse(
      JSON.parse(Deno.readTextFileSync(join(root, ".install.json"))),
    );
    return r.success && r.data.prefix === root ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** How the last upgrade ended, as the detached script left it. */
export function lastUpgrade(stateDir: string): UpgradeResult | null {
  try {
    const r = UpgradeResultSchema.safeParse(
      JSON.parse(Deno.readTextFileSync(join(stateDir, "upgrade", "result.json"))),
    );
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** A value as one single-quoted shell word. */
function q(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The detached script that installs the new build and rolls back if it does not come up. */
export function upgradeScript(o: {
  info: InstallInfo;
  src: string;
  to: string;
  dir: string;
}): string {
  const { prefix, bin, state_dir: state, build: from } = o.info;
  return `#!/bin/bash
# outpost upgrade: ${from || "(checkout)"} -> ${o.to}
set -u
PREFIX=${q(prefix)}
BIN=${q(bin)}
STATE=${q(state)}
SRC=${q(o.src)}
DIR=${q(o.dir)}
# stop_service: the daemon's service, however install.sh started it (instances keep running).
stop_service() {
  if [ -f /etc/systemd/system/outpost.service ] && command -v systemctl >/dev/null; then
    systemctl stop outpost.service >/dev/null 2>&1 || true
  fi
  for f in supervisor.pid daemon.pid; do
    if [ -f "$STATE/$f" ]; then
      pid=$(cat "$STATE/$f")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
}
result() {
  printf '{"result": "%s", "from": "%s", "to": "%s", "at": "%s", "message": "%s"}\\n' \\
    "$1" ${q(from)} ${q(o.to)} "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$2" > "$DIR/result.json.tmp"
  mv "$DIR/result.json.tmp" "$DIR/result.json"
}
rm -rf "$PREFIX.old"
cp -a "$PREFIX" "$PREFIX.old"
if OUTPOST_PREFIX="$PREFIX" OUTPOST_BIN="$BIN" OUTPOST_BUILD=${q(o.to)} \\
  bash "$SRC/install.sh" --state-dir "$STATE" --no-image; then
  result upgraded ""
  rm -rf "$PREFIX.old" "$SRC"
else
  echo "outpost upgrade: the new build did not come up; rolling back" >&2
  # The result first: the new build's supervisor may start the old daemon as soon as it is back.
  result rolled-back "the new build did not come up (see upgrade.log); the old one runs again"
  # The new build's service stops first: its supervisor keeps restarting the daemon, and each try
  # writes into the tree (even makes it again after a rename), so the old tree could land inside
  # what was left of the new one. Then two renames, \`mv -T\` never moving into a directory.
  stop_service
  rm -rf "$PREFIX.failed"
  mv -T "$PREFIX" "$PREFIX.failed"
  mv -T "$PREFIX.old" "$PREFIX"
  rm -rf "$PREFIX.failed" 2>/dev/null || true
  OUTPOST_PREFIX="$PREFIX" OUTPOST_BIN="$BIN" OUTPOST_BUILD=${q(from)} \\
    bash "$PREFIX/install.sh" --state-dir "$STATE" --no-image
fi
`;
}

export interface UpgradeDeps {
  stateDir: string;
  runner: Runner;
  record: () => FleetRecord | undefined;
  credentials: () => Promise<{ cert: string; key: string }>;
  log: (msg: string) => void;
}

export class Upgrader {
  #running = false;

  constructor(private deps: UpgradeDeps) {}

  /** Fetches build `sha256` from the hub, checks it, and starts installing it (detached). */
  async start(sha256: string): Promise<{ from: string; to: string }> {
    const info = installInfo();
    if (!info) {
      throw new BadRequest(
        "This agent runs from a source checkout, not an install.sh install: upgrade it there",
      );
    }
    if (info.build === sha256) return { from: info.build, to: sha256 };
    const record = this.deps.record();
    if (!record) throw new BadRequest("This host is not enrolled with a hub");
    if (this.#running) throw new Conflict("An upgrade is already under way");
    this.#running = true;
    try {
      const dir = join(this.deps.stateDir, "upgrade");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const tarball = join(dir, "agent.tar.gz");
      await this.#download(record, tarball, sha256);
      const src = join(dir, "src");
      await Deno.mkdir(src);
      const untar = await this.deps.runner.run([
        "tar",
        "-xzf",
        tarball,
        "-C",
        src,
        "--no-same-owner",
      ], {
        allowFailure: true,
      });
      if (untar.code !== 0) {
        throw new BadRequest(`The agent program does not unpack: ${untar.stderr}`);
      }
      const script = join(dir, "run.sh");
      await Deno.writeTextFile(script, upgradeScript({ info, src, to: sha256, dir }), {
        mode: 0o700,
      });
      // setsid: the script outlives this daemon, which install.sh stops and starts again.
      await this.deps.runner.run([
        "bash",
        "-c",
        `setsid bash ${q(script)} </dev/null >>${q(join(dir, "upgrade.log"))} 2>&1 &`,
      ]);
      this.deps.log(`fleet: upgrading ${info.build || "(checkout)"} -> ${sha256}`);
      return { from: info.build, to: sha256 };
    } finally {
      this.#running = false;
    }
  }

  async #download(record: FleetRecord, file: string, sha256: string): Promise<void> {
    const failures: string[] = [];
    for (const { url, transport } of await hubTransports(record, this.deps.credentials)) {
      try {
        const resp = await transport.fetch("GET", `${FLEET_API}/agent.tar.gz`, {
          headers: new Headers(),
        });
        if (!resp.ok || !resp.body) {
          await resp.body?.cancel();
          throw new Error(`HTTP ${resp.status}`);
        }
        const hash = createHash("sha256");
        const out = await Deno.open(file, {
          write: true,
          create: true,
          truncate: true,
          mode: 0o600,
        });
        let size = 0;
        try {
          for await (const chunk of resp.body) {
            size += chunk.byteLength;
            if (size > MAX_PROGRAM) {
              throw new Error(`the program is larger than ${MAX_PROGRAM} bytes`);
            }
            hash.update(chunk);
            for (let off = 0; off < chunk.byteLength;) off += await out.write(chunk.subarray(off));
          }
        } finally {
          out.close();
        }
        const got = hash.digest("hex");
        if (got !== sha256) {
          throw new BadRequest(
            `The agent program from ${url} has sha256 ${got.slice(0, 12)}, not ${
              sha256.slice(0, 12)
            }: not installing it`,
          );
        }
        return;
      } catch (err) {
        if (err instanceof BadRequest) throw err;
        failures.push(`${url}: ${(err as Error).message}`);
      }
    }
    throw new BadRequest(`Cannot download the agent program: ${failures.join("; ")}`);
  }
}
