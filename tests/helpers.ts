/**
 * End-to-end test harness: a real `outpost daemon` process on a temp state dir, the real CLI,
 * real LXC. Everything a test creates is removed by `cleanup()`.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ApiClient, ApiError } from "../contract/client.ts";
import { runtimeFlags } from "../scripts/permissions.ts";
import { encodeToken, NEVER } from "../contract/trust_token.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = join(ROOT, "main.ts");
/** The daemon and the CLI run with the release's narrowed permissions, as installed. */
const RUN = ["run", "--quiet", "--no-prompt", ...runtimeFlags(), MAIN];

/** The argv that runs the outpost CLI from this checkout. */
export function outpostArgv(): string[] {
  return [Deno.execPath(), ...RUN];
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The outpost CLI run in network namespace `ns`, with its config (key pair, remotes) in `conf`. */
export async function cliInNetns(ns: string, conf: string, ...args: string[]): Promise<CliResult> {
  const out = await new Deno.Command("nsenter", {
    args: [`--net=/run/netns/${ns}`, "--", ...outpostArgv(), ...args],
    env: { OUTPOST_CONF: conf },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Waits until `ok()` holds (its errors count as not yet), failing after `ms` naming `what`. */
export async function waitUntil(
  what: string,
  ok: () => Promise<boolean>,
  ms = 30_000,
): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await ok().catch(() => false)) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/** A loopback port nothing listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A unique, valid instance name, so parallel runs and leftovers never collide. */
export function uniqueName(prefix = "t"): string {
  return `${prefix}${crypto.randomUUID().slice(0, 8)}`;
}

let imageTarball: Promise<string> | undefined;

/** The busybox image, built once per test process. */
export function busyboxTarball(): Promise<string> {
  imageTarball ??= (async () => {
    const { buildBusyboxImage } = await import("../image_build/busybox.ts");
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

let vmImage: Promise<string> | undefined;

/** The VM test image (Debian kernel + busybox + qemu-guest-agent), built once per test process. */
export function vmTarball(): Promise<string> {
  vmImage ??= (async () => {
    const { buildVmBusyboxImage } = await import("../image_build/vm_busybox.ts");
    const dir = await Deno.makeTempDir({ prefix: "outpost-test-vm-image-" });
    const built = await buildVmBusyboxImage({ outFile: join(dir, "vm-busybox.tar.gz") });
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* already gone */ }
    });
    return built.file;
  })();
  return vmImage;
}

/** Whether QEMU is installed (VM tests are skipped, reported as ignored, without it). */
export const HAS_QEMU = (await new Deno.Command("sh", {
  args: ["-c", "command -v qemu-system-x86_64 && command -v qemu-img"],
  stdout: "null",
}).output()).success;

/**
 * Starts a server process (stderr appended to `logFile`, in network namespace `netns` if given)
 * and waits until `ready` succeeds. The shell becomes the server (same pid, for kill -9).
 * nsenter --net changes the network namespace only (`ip netns exec` would also unmount the
 * cgroup hierarchies under /sys, which LXC needs).
 */
export async function spawnServer(
  argv: string[],
  opts: {
    logFile: string;
    netns?: string;
    /** Also the namespace's own /sys (`ip netns exec`): what sees its bridges as LXC looks. */
    sysfs?: boolean;
    ready: () => Promise<unknown>;
  },
): Promise<Deno.ChildProcess> {
  const netns = !opts.netns
    ? []
    : opts.sysfs
    ? ["ip", "netns", "exec", opts.netns]
    : ["nsenter", `--net=/run/netns/${opts.netns}`, "--"];
  const quoted = [...netns, ...argv].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const proc = new Deno.Command("sh", {
    args: ["-c", `exec ${quoted} 2>>'${opts.logFile}'`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      await opts.ready();
      return proc;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${argv.slice(-4).join(" ")} did not come up`);
}

export class TestDaemon {
  proc?: Deno.ChildProcess;
  api: ApiClient;
  #logFile: string;

  /** A network namespace the daemon runs in (`ip netns exec`), for tests of two hosts. */
  netns?: string;
  #network = false;

  private constructor(readonly dir: string) {
    this.api = new ApiClient(join(dir, "unix.socket"));
    this.#logFile = join(dir, "test-daemon.log");
  }

  /**
   * A daemon on a new temp state dir, or on `dir` (which must exist and be empty). It makes no
   * default network unless `network` is set (tests share the host: a bridge is a test's own).
   */
  static async start(
    dir?: string,
    opts: { netns?: string; network?: boolean } = {},
  ): Promise<TestDaemon> {
    dir ??= await Deno.makeTempDir({ prefix: "outpost-e2e-" });
    const d = new TestDaemon(dir);
    d.netns = opts.netns;
    d.#network = opts.network ?? false;
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
    this.proc = await spawnServer(
      [
        Deno.execPath(),
        ...RUN,
        "daemon",
        "--state-dir",
        this.dir,
        ...(this.#network ? [] : ["--no-network"]),
      ],
      {
        logFile: this.#logFile,
        netns: this.netns,
        sysfs: this.#network,
        ready: () => this.api.get("/1.0"),
      },
    ).catch(async (err) => {
      throw new Error(`${err.message}:\n${await this.log()}`);
    });
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

  /** Starts the real CLI against this daemon with piped stdio (for streaming tests). */
  spawnCli(...args: string[]): Deno.ChildProcess {
    return new Deno.Command(Deno.execPath(), {
      args: [...RUN, "--state-dir", this.dir, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  }

  /** Runs the real CLI against this daemon. */
  cli(...args: string[]): Promise<CliResult> {
    return this.cliWithEnv({}, ...args);
  }

  /** Runs the real CLI against this daemon with extra environment variables. */
  async cliWithEnv(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...RUN, "--state-dir", this.dir, ...args],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  /** The CLI as one shell command line (for running it under a PTY). */
  get cliCommandLine(): string {
    return [Deno.execPath(), ...RUN, "--state-dir", this.dir].map((a) => `'${a}'`).join(" ");
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

  async importVmImage(alias = "vm"): Promise<void> {
    await this.ok("image", "import", await vmTarball(), "--alias", alias);
  }

  /** An instance's status as the API reports it ("Running", "Stopped", ...); undefined if none. */
  async status(name: string): Promise<string | undefined> {
    try {
      return (await this.api.get<{ status: string }>(`/1.0/instances/${name}`)).status;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * Makes sure the instance runs, whatever earlier tests left it in: `outpost launch IMAGE NAME
   * ...options` if it is missing, started if it is stopped, resumed if it is frozen. Returns
   * whether it had to boot it.
   */
  async ensureRunning(name: string, image: string, ...options: string[]): Promise<boolean> {
    const status = await this.status(name);
    if (status === "Running") return false;
    if (status === "Frozen") {
      await this.ok("resume", name);
      return false;
    }
    await this.ok(
      ...(status === undefined ? ["launch", image, name, ...options] : ["start", name]),
    );
    return true;
  }

  /**
   * Makes sure the instance exists and is stopped: `outpost init IMAGE NAME ...options` if it is
   * missing, stopped (forced) if it is not.
   */
  async ensureStopped(name: string, image: string, ...options: string[]): Promise<void> {
    const status = await this.status(name);
    if (status === "Stopped") return;
    await this.ok(
      ...(status === undefined ? ["init", image, name, ...options] : ["stop", name, "--force"]),
    );
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

  /** Kills every container and VM this daemon made, stops the daemon, removes the dir. */
  async cleanup(): Promise<void> {
    this.api.close();
    await this.stop().catch(() => {});
    const vms = join(this.dir, "virtual-machines");
    if (existsSync(vms)) {
      for (const name of readdirSync(vms)) {
        const pid = Number(
          (await Deno.readTextFile(join(vms, name, "qemu.pid")).catch(() => "")).trim(),
        );
        if (pid > 0) {
          await new Deno.Command("kill", { args: ["-9", String(pid)], stderr: "null" }).output();
        }
      }
    }
    if (existsSync(this.lxcPath)) {
      for (const name of readdirSync(this.lxcPath)) {
        await new Deno.Command("lxc-stop", {
          args: ["-P", this.lxcPath, "-n", name, "-k"],
          stdout: "null",
          stderr: "null",
        }).output();
      }
    }
    // Storage pools on loop files the test left mounted: unmounted, deepest first.
    const mountinfo = await Deno.readTextFile("/proc/self/mountinfo").catch(() => "");
    const mounts = mountinfo.split("\n").map((l) => l.split(" ")[4] ?? "")
      .filter((at) => at.startsWith(`${this.dir}/`)).sort().reverse();
    for (const at of mounts) {
      await new Deno.Command("umount", { args: ["-l", at], stderr: "null" }).output();
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * A daemon shared by the tests of one file, for tests that would each spend longer starting a
 * daemon than proving their behaviour. The first test that calls the returned function starts it
 * and runs `prepare` on it (import an image, set a key); it is cleaned up after the file's last
 * test, pass or fail. Call it at the top of the test file.
 */
export function sharedDaemon(
  prepare: (d: TestDaemon) => Promise<void> = async () => {},
): () => Promise<TestDaemon> {
  let daemon: Promise<TestDaemon> | undefined;
  Deno.test.afterAll(async () => {
    await (await daemon?.catch(() => undefined))?.cleanup();
  });
  return () =>
    daemon ??= TestDaemon.start().then(async (d) => {
      try {
        await prepare(d);
        return d;
      } catch (err) {
        await d.cleanup();
        throw err;
      }
    });
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

/** Whether the stock LXD client (`lxc`, Debian's lxd-client) is installed. */
export const HAS_LXC =
  (await new Deno.Command("sh", { args: ["-c", "command -v lxc"], stdout: "null" })
    .output()).success;
/** Whether the Incus 6.0 client is installed (tests/run.sh installs it where a package has it). */
export const HAS_INCUS =
  (await new Deno.Command("sh", { args: ["-c", "command -v incus"], stdout: "null" })
    .output()).success;

/**
 * The stock LXD client pointed at a test daemon's socket (`LXD_DIR`), with its own HOME and a
 * pre-made config.yml so it prints no first-run hints.
 */
export class StockLxc {
  private constructor(
    readonly daemon: TestDaemon,
    readonly home: string,
    /** `lxc` (LXD 5.0) or `incus` (Incus 6.0). */
    readonly binary: "lxc" | "incus" = "lxc",
  ) {}

  /** A network namespace the client runs in (`ip netns exec`), for tests of two hosts. */
  netns?: string;

  static async for(daemon: TestDaemon): Promise<StockLxc> {
    const home = await Deno.makeTempDir({ prefix: "outpost-lxc-home-", dir: daemon.dir });
    await Deno.mkdir(join(home, ".config", "lxc"), { recursive: true });
    await Deno.writeTextFile(join(home, ".config", "lxc", "config.yml"), "default-remote: local\n");
    return new StockLxc(daemon, home);
  }

  /** The Incus 6.0 client (`INCUS_DIR`), with its own HOME. */
  static async incus(daemon: TestDaemon): Promise<StockLxc> {
    const home = await Deno.makeTempDir({ prefix: "outpost-incus-home-", dir: daemon.dir });
    await Deno.mkdir(join(home, ".config", "incus"), { recursive: true });
    await Deno.writeTextFile(
      join(home, ".config", "incus", "config.yml"),
      "default-remote: local\n",
    );
    return new StockLxc(daemon, home, "incus");
  }

  get env(): Record<string, string> {
    return {
      [this.binary === "lxc" ? "LXD_DIR" : "INCUS_DIR"]: this.daemon.dir,
      HOME: this.home,
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    };
  }

  /** Runs the client with ARGS and optional stdin; never throws. */
  async run(args: string[], stdin?: Uint8Array | string): Promise<CliResult> {
    const argv = this.netns ? ["ip", "netns", "exec", this.netns, this.binary, ...args] : [
      this.binary,
      ...args,
    ];
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: this.env,
      clearEnv: true,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin);
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  /** Runs the client with ARGS and fails with its stderr on a non-zero exit. */
  async ok(...args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) {
      throw new Error(`${this.binary} ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    }
    return r.stdout;
  }

  /** Runs the client with ARGS under a PTY (`script`), typing `input` after `delayMs`. */
  async tty(args: string[], input: string, delayMs = 1500): Promise<CliResult> {
    const cmd = [
      "stty cols 100 rows 30;",
      "exec",
      this.binary,
      ...args.map((a) => `'${a.replaceAll("'", "'\\''")}'`),
    ]
      .join(" ");
    return await typeInto(cmd, input, this.env, delayMs);
  }
}

/** Runs a shell command under a PTY (`script`), typing `input` after `delayMs`. */
export async function typeInto(
  command: string,
  input: string,
  env: Record<string, string>,
  delayMs = 1500,
  stepMs = 300,
): Promise<CliResult> {
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await new Promise((r) => setTimeout(r, delayMs));
  // Each line, and a ctrl+a escape and its key, go as separate writes (clients read them apart).
  // deno-lint-ignore no-control-regex
  for (const part of input.split(/(?<=\r)|(?=\x01)|(?<=\x01)/)) {
    await w.write(new TextEncoder().encode(part));
    await new Promise((r) => setTimeout(r, stepMs));
  }
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(timer);
  await w.close().catch(() => {});
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `n` random bytes (getRandomValues gives at most 64 KiB a call). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65_536) crypto.getRandomValues(out.subarray(at, at + 65_536));
  return out;
}

/**
 * Issues a trust token over the daemon's unix socket (`POST /1.0/certificates {"token": true}`)
 * and answers it as the clients print it, with its operation's id.
 */
export async function issueTrustToken(
  d: TestDaemon,
  extra: Record<string, unknown> = {},
): Promise<{ token: string; id: string; class: string }> {
  const op = await d.api.start("POST", "/1.0/certificates", {
    body: { token: true, name: uniqueName("tok"), ...extra },
  });
  const m = op.metadata as {
    request: { name: string };
    fingerprint: string;
    addresses: string[];
    secret: string;
    expiresAt?: string;
  };
  const token = encodeToken({
    client_name: m.request.name,
    fingerprint: m.fingerprint,
    addresses: m.addresses,
    secret: m.secret,
    expires_at: m.expiresAt ?? NEVER,
  });
  return { token, id: op.id, class: op.class };
}
