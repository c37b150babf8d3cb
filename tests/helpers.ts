/**
 * End-to-end test harness: a real `outpost daemon` process on a temp state dir, the real CLI,
 * real LXC. Everything a test creates is removed by `cleanup()`.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ApiClient } from "../api/client.ts";
import { permissionFlags } from "../scripts/permissions.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = join(ROOT, "main.ts");
/** The daemon and the CLI run with the release's narrowed permissions, as installed. */
const RUN = ["run", "--quiet", "--no-prompt", ...permissionFlags(), MAIN];

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A unique, valid instance name, so parallel runs and leftovers never collide. */
export function uniqueName(prefix = "t"): string {
  return `${prefix}${crypto.randomUUID().slice(0, 8)}`;
}

let imageTarball: Promise<string> | undefined;

/** The busybox image, built once per test process. */
export function busyboxTarball(): Promise<string> {
  imageTarball ??= (async () => {
    const { buildBusyboxImage } = await import("../agent/image_build/busybox.ts");
    const dir = await Deno.makeTempDir({ prefix: "outpost-test-image-" });
    const built = await buildBusyboxImage({ outFile: join(dir, "busybox.tar.gz") });
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* already gone */ }
    });
    return built.file;
  })();
  return imageTarball;
}

export class TestDaemon {
  proc?: Deno.ChildProcess;
  api: ApiClient;
  #logFile: string;

  private constructor(readonly dir: string) {
    this.api = new ApiClient(join(dir, "unix.socket"));
    this.#logFile = join(dir, "test-daemon.log");
  }

  static async start(): Promise<TestDaemon> {
    const dir = await Deno.makeTempDir({ prefix: "outpost-e2e-" });
    const d = new TestDaemon(dir);
    await d.spawn();
    return d;
  }

  get socket(): string {
    return join(this.dir, "unix.socket");
  }

  get lxcPath(): string {
    return join(this.dir, "containers");
  }

  /** Starts the daemon process and waits until its API answers. */
  async spawn(): Promise<void> {
    const log = await Deno.open(this.#logFile, { append: true, create: true, write: true });
    this.proc = new Deno.Command(Deno.execPath(), {
      args: [...RUN, "daemon", "--state-dir", this.dir],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.proc.stderr.pipeTo(log.writable).catch(() => {});
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        await this.api.get("/1.0");
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`The daemon did not come up:\n${await this.log()}`);
  }

  async log(): Promise<string> {
    return await Deno.readTextFile(this.#logFile).catch(() => "");
  }

  /** kill -9 the daemon (containers must survive). */
  async kill9(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill("SIGKILL");
    await this.proc.status;
    this.proc = undefined;
  }

  /** A clean SIGTERM stop of the daemon. */
  async stop(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill("SIGTERM");
    await this.proc.status;
    this.proc = undefined;
  }

  /** Runs the real CLI against this daemon. */
  async cli(...args: string[]): Promise<CliResult> {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...RUN, "--state-dir", this.dir, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  /** Runs the CLI and fails with its stderr if it exits non-zero. */
  async ok(...args: string[]): Promise<string> {
    const r = await this.cli(...args);
    if (r.code !== 0) {
      throw new Error(`outpost ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    }
    return r.stdout;
  }

  async importBusybox(alias = "busybox"): Promise<void> {
    await this.ok("image", "import", await busyboxTarball(), "--alias", alias);
  }

  /** The state of a container as LXC itself reports it (not through outpost). */
  async lxcState(name: string): Promise<{ state: string; pid: number }> {
    const out = await new Deno.Command("lxc-info", {
      args: ["-P", this.lxcPath, "-n", name, "-s", "-p", "-H"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const state = /State:\s+(\S+)/.exec(text)?.[1] ?? "";
    const pid = Number(/PID:\s+(\d+)/.exec(text)?.[1] ?? -1);
    return { state, pid };
  }

  /** Kills every container under this daemon's LXC path, stops the daemon, removes the dir. */
  async cleanup(): Promise<void> {
    this.api.close();
    await this.stop().catch(() => {});
    if (existsSync(this.lxcPath)) {
      for (const name of readdirSync(this.lxcPath)) {
        await new Deno.Command("lxc-stop", {
          args: ["-P", this.lxcPath, "-n", name, "-k"],
          stdout: "null",
          stderr: "null",
        }).output();
      }
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Waits until `check` returns true, or fails after `ms`. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${what}`);
}
