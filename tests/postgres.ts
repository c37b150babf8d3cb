/**
 * A private PostgreSQL server for a test: a fresh cluster in a temp dir, run as the `postgres`
 * user, listening only on a unix socket in that dir (reachable from every network namespace),
 * with one database. `stop()` stops it and removes everything.
 */
import { join } from "node:path";

export interface Postgres {
  /** `postgresql://postgres@<socket dir>:<port>/outpost`, for `outpost hub --database`. */
  url: string;
  stop(): Promise<void>;
}

/** The newest PostgreSQL's programs, or undefined when none is installed. */
function pgBin(): string | undefined {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => Number(e.name))
      .filter((n) => n > 0).sort((a, b) => b - a);
    return versions.length ? `/usr/lib/postgresql/${versions[0]}/bin` : undefined;
  } catch {
    return undefined;
  }
}

export const HAS_POSTGRES = Deno.uid() === 0 && pgBin() !== undefined;

async function asPostgres(...argv: string[]): Promise<void> {
  const out = await new Deno.Command("runuser", {
    args: ["-u", "postgres", "--", ...argv],
    stdout: "piped",
    stderr: "piped",
    cwd: "/",
  }).output();
  if (!out.success) {
    const dec = new TextDecoder();
    throw new Error(`${argv.join(" ")}: ${dec.decode(out.stderr)}${dec.decode(out.stdout)}`);
  }
}

export async function startPostgres(): Promise<Postgres> {
  const bin = pgBin();
  if (!bin) throw new Error("PostgreSQL is not installed");
  const dir = await Deno.makeTempDir({ prefix: "outpost-pg-" });
  await Deno.chmod(dir, 0o755);
  const data = join(dir, "data");
  const port = 20000 + Math.floor(Math.random() * 20000);
  await new Deno.Command("chown", { args: ["postgres:postgres", dir] }).output();
  let started = false;
  const stop = async () => {
    if (started) {
      await asPostgres(join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        .catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await asPostgres(
      join(bin, "initdb"),
      "-D",
      data,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
    );
    await asPostgres(
      join(bin, "pg_ctl"),
      "-D",
      data,
      "-l",
      join(dir, "server.log"),
      "-o",
      `-k ${dir} -p ${port} -c listen_addresses=''`,
      "-w",
      "start",
    );
    started = true;
    await asPostgres(
      join(bin, "psql"),
      "-h",
      dir,
      "-p",
      String(port),
      "-U",
      "postgres",
      "-c",
      "CREATE DATABASE outpost",
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `postgresql://postgres@${encodeURIComponent(dir)}:${port}/outpost`, stop };
}
