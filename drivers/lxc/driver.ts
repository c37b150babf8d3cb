/** System containers through the host's LXC tools, kept under the daemon's own LXC path. */
import { existsSync, lstatSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { availableParallelism, totalmem } from "node:os";
import { isTrue } from "../../agent/config_keys.ts";
import { Conflict, InvalidState } from "../../agent/errors.ts";
import type { ImageSource } from "../../agent/images.ts";
import type { InstanceRecord } from "../../agent/store.ts";
import type {
  Driver,
  DriverInfo,
  ExecOptions,
  ExecProcess,
  ExecRequest,
  InstanceRuntime,
  PowerState,
  StopOptions,
} from "../driver.ts";
import type { Runner } from "../runner.ts";
import { hostLayout, limitSettings, limitsFromConfig, readUsage } from "./cgroups.ts";
import { lxcConfig } from "./config.ts";
import { hostIdMap, type IdMap, idmapJson, shiftTree } from "./idmap.ts";
import { attachPlan, execEnvironment, spawnPiped, spawnPty } from "./attach.ts";
import { CommandFiles, type CommandResult } from "../command_files.ts";
import type { FileAccess } from "../files.ts";
import { IdShift, LxcFiles } from "./files.ts";
import { readNetwork } from "./network.ts";
import { LxcSnapshots } from "./snapshots.ts";

/**
 * An unprivileged container's root (a high uid on the host) must be able to reach its rootfs:
 * every directory above it needs the "others may search" bit.
 */
function checkSearchable(path: string): void {
  for (let dir = dirname(path);; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new InvalidState(
        `Unprivileged containers cannot reach ${path}: run "chmod o+x ${dir}" (or use security.privileged=true)`,
      );
    }
    if (dir === "/") return;
  }
}

const SECCOMP_PROFILES = ["/usr/share/lxc/config/common.seccomp"];

export class LxcDriver implements Driver {
  readonly type = "container" as const;
  #info: DriverInfo = { name: "lxc", version: "", available: false, error: "not probed" };
  #idmap?: IdMap;

  readonly files: FileAccess;
  readonly snapshots: LxcSnapshots;

  constructor(readonly lxcPath: string, private runner: Runner) {
    // A running container's files are reached from inside it (its own mounts, such as a tmpfs
    // /tmp, are then visible); a stopped one's straight on its rootfs.
    const onRootfs = new LxcFiles((name) => this.rootfs(name));
    const inside = new CommandFiles({
      run: (inst, argv, input) => this.#attachRun(inst, argv, input),
    });
    const pick = async (inst: InstanceRecord): Promise<FileAccess> =>
      this.#hasShell(inst.name) && (await this.status(inst)) === "Running" ? inside : onRootfs;
    this.files = {
      stat: async (inst, path) => await (await pick(inst)).stat(inst, path),
      read: async (inst, path) => await (await pick(inst)).read(inst, path),
      write: async (inst, path, w) => {
        // Ids outside the container's map are refused the same way however the write goes.
        const ids = IdShift.of(inst);
        if (w.uid !== undefined) ids.host(w.uid, "uid");
        if (w.gid !== undefined) ids.host(w.gid, "gid");
        return await (await pick(inst)).write(inst, path, w);
      },
      remove: async (inst, path) => await (await pick(inst)).remove(inst, path),
    };
    this.snapshots = new LxcSnapshots((name) => this.dir(name), runner);
  }

  /** Runs a command as root in a running container and collects its output. */
  async #attachRun(
    inst: InstanceRecord,
    argv: string[],
    input?: Uint8Array,
  ): Promise<CommandResult> {
    const req = { command: argv, environment: {}, cwd: "/" };
    const plan = attachPlan(
      this.lxcPath,
      inst.name,
      req,
      execEnvironment(req, false),
      false,
      () => true,
    );
    const proc = spawnPiped(this.runner, plan.argv, plan.cwd);
    const writer = proc.stdin.getWriter();
    await writer.write(input ?? new Uint8Array()).catch(() => {});
    await writer.close().catch(() => {});
    const [stdout, stderr] = await Promise.all([
      new Response(proc.stdout).bytes(),
      new Response(proc.stderr!).bytes(),
    ]);
    return { code: await proc.status, stdout, stderr };
  }

  /** Probes the LXC tools once (the registry calls this at start-up). */
  async probe(): Promise<DriverInfo> {
    try {
      const r = await this.runner.run(["lxc-start", "--version"]);
      this.#info = { name: "lxc", version: r.stdout.trim(), available: true, error: "" };
    } catch (err) {
      this.#info = {
        name: "lxc",
        version: "",
        available: false,
        error: err instanceof Error ? err.message : String(err),
      };
    }
    return this.#info;
  }

  info(): DriverInfo {
    return this.#info;
  }

  dir(name: string): string {
    return join(this.lxcPath, name);
  }

  rootfs(name: string): string {
    return join(this.dir(name), "rootfs");
  }

  #hostIdMap(): IdMap {
    this.#idmap ??= hostIdMap();
    return this.#idmap;
  }

  #lxc(tool: string, name: string, ...args: string[]): string[] {
    return [tool, "-P", this.lxcPath, "-n", name, ...args];
  }

  async create(inst: InstanceRecord, image: ImageSource): Promise<void> {
    const dir = this.dir(inst.name);
    if (existsSync(dir)) {
      throw new Conflict(
        `Storage for "${inst.name}" already exists in ${this.lxcPath}: remove it first`,
      );
    }
    await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
    const unpack = join(dir, ".unpack");
    try {
      await Deno.mkdir(unpack);
      await this.runner.run([
        "tar",
        "-xf",
        image.file,
        "-C",
        unpack,
        "--numeric-owner",
        "-p",
        "--xattrs-include=*",
        "--exclude=dev/*",
      ]);
      const unpacked = join(unpack, "rootfs");
      if (!existsSync(unpacked)) throw new Error("The image has no rootfs/ directory");
      await Deno.rename(unpacked, this.rootfs(inst.name));
      await Deno.remove(unpack, { recursive: true });
      await Deno.writeTextFile(join(this.rootfs(inst.name), "etc", "hostname"), `${inst.name}\n`)
        .catch(() => {});
      inst.config["volatile.last_state.idmap"] = "[]";
      this.#shiftForConfig(inst);
      await this.#writeConfig(inst);
    } catch (err) {
      // A failed create leaves nothing behind.
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** Shifts the rootfs when the wanted id map differs from the one it was last shifted to. */
  #shiftForConfig(inst: InstanceRecord): void {
    const want = isTrue(inst.config["security.privileged"]) ? undefined : this.#hostIdMap();
    const wantJson = want ? idmapJson(want) : "[]";
    const have = inst.config["volatile.last_state.idmap"] ?? "[]";
    if (have !== wantJson) {
      const base = (json: string, uid: boolean) =>
        (JSON.parse(json) as { Isuid: boolean; Hostid: number }[]).find((e) => e.Isuid === uid)
          ?.Hostid ?? 0;
      shiftTree(
        this.rootfs(inst.name),
        base(wantJson, true) - base(have, true),
        base(wantJson, false) - base(have, false),
      );
      inst.config["volatile.last_state.idmap"] = wantJson;
    }
    inst.config["volatile.idmap.current"] = wantJson;
  }

  async #writeConfig(inst: InstanceRecord): Promise<void> {
    const text = lxcConfig({
      name: inst.name,
      dir: this.dir(inst.name),
      config: inst.config,
      idmap: this.#hostIdMap(),
      layout: await hostLayout(this.runner),
      seccompProfile: SECCOMP_PROFILES.find((p) => existsSync(p)),
      host: { cpus: availableParallelism(), memory: totalmem() },
    });
    await Deno.writeTextFile(join(this.dir(inst.name), "config"), text);
  }

  async start(inst: InstanceRecord): Promise<void> {
    const status = await this.status(inst);
    if (status !== "Stopped") {
      throw new InvalidState(`Instance "${inst.name}" is already ${status.toLowerCase()}`);
    }
    this.#shiftForConfig(inst);
    if (!isTrue(inst.config["security.privileged"])) checkSearchable(this.rootfs(inst.name));
    await this.#writeConfig(inst);
    const log = join(this.dir(inst.name), "lxc.log");
    await Deno.writeTextFile(log, "");
    const r = await this.runner.run(this.#lxc("lxc-start", inst.name), { allowFailure: true });
    if (r.code !== 0) {
      const detail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n")
        .filter((l) => l.includes("ERROR")).slice(-3).map((l) => l.replace(/^.* - /, "")).join(
          "; ",
        );
      throw new Error(`Failed to start container "${inst.name}"${detail ? `: ${detail}` : ""}`);
    }
    await this.runner.run(this.#lxc("lxc-wait", inst.name, "-s", "RUNNING", "-t", "10"));
  }

  async stop(inst: InstanceRecord, opts: StopOptions): Promise<void> {
    const status = await this.status(inst);
    if (status === "Stopped") return;
    if (opts.force) {
      await this.runner.run(this.#lxc("lxc-stop", inst.name, "-k"));
      return;
    }
    if (status === "Frozen") await this.unfreeze(inst);
    await this.runner.run(this.#lxc("lxc-stop", inst.name, "-t", String(opts.timeout)));
  }

  async freeze(inst: InstanceRecord): Promise<void> {
    await this.runner.run(this.#lxc("lxc-freeze", inst.name));
  }

  async unfreeze(inst: InstanceRecord): Promise<void> {
    await this.runner.run(this.#lxc("lxc-unfreeze", inst.name));
  }

  async delete(inst: InstanceRecord): Promise<void> {
    if ((await this.status(inst)) !== "Stopped") {
      await this.runner.run(this.#lxc("lxc-stop", inst.name, "-k"), { allowFailure: true });
    }
    await Deno.remove(this.dir(inst.name), { recursive: true }).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }

  async rename(inst: InstanceRecord, newName: string): Promise<void> {
    if (existsSync(this.dir(newName))) {
      throw new Conflict(
        `Storage for "${newName}" already exists in ${this.lxcPath}: remove it first`,
      );
    }
    await Deno.rename(this.dir(inst.name), this.dir(newName));
    // The config names its own paths and the UTS name: write it anew for the new name.
    const renamed = { ...inst, name: newName };
    await this.#writeConfig(renamed);
    await Deno.writeTextFile(join(this.rootfs(newName), "etc", "hostname"), `${newName}\n`).catch(
      () => {},
    );
  }

  async #info2(name: string): Promise<{ status: PowerState; pid: number }> {
    if (!existsSync(join(this.dir(name), "config"))) return { status: "Error", pid: -1 };
    const r = await this.runner.run(this.#lxc("lxc-info", name, "-s", "-p", "-H"), {
      allowFailure: true,
    });
    const state = /State:\s+(\S+)/.exec(r.stdout)?.[1] ?? (r.stdout.split("\n")[0] ?? "").trim();
    const pid = Number(/PID:\s+(\d+)/.exec(r.stdout)?.[1] ?? r.stdout.split("\n")[1] ?? -1);
    const status: PowerState = state === "RUNNING"
      ? "Running"
      : state === "FROZEN" || state === "FREEZING"
      ? "Frozen"
      : state === "STOPPED"
      ? "Stopped"
      : r.code === 0
      ? "Running"
      : "Error";
    return { status, pid: status === "Stopped" ? -1 : Number.isFinite(pid) ? pid : -1 };
  }

  async status(inst: InstanceRecord): Promise<PowerState> {
    return (await this.#info2(inst.name)).status;
  }

  async state(inst: InstanceRecord): Promise<InstanceRuntime> {
    const { status, pid } = await this.#info2(inst.name);
    const runtime: InstanceRuntime = {
      status,
      pid,
      processes: 0,
      memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
      cpu: { usage: 0 },
      network: {},
    };
    if (pid > 0) {
      try {
        const u = await readUsage(this.runner, pid);
        runtime.processes = u.processes;
        runtime.memory = {
          usage: u.memory,
          usage_peak: u.memoryPeak,
          swap_usage: u.swap,
          swap_usage_peak: 0,
        };
        runtime.cpu = { usage: u.cpuNs };
      } catch { /* the container stopped while we read it */ }
      runtime.network = await readNetwork(this.runner, pid);
    }
    return runtime;
  }

  async exec(inst: InstanceRecord, req: ExecRequest, opts: ExecOptions): Promise<ExecProcess> {
    if ((await this.status(inst)) !== "Running") {
      throw new InvalidState(`Instance "${inst.name}" is not running`);
    }
    const env = execEnvironment(req, opts.interactive);
    const { argv, cwd } = attachPlan(
      this.lxcPath,
      inst.name,
      req,
      env,
      this.#hasShell(inst.name),
      (p) => {
        try {
          return statSync(p).isDirectory();
        } catch {
          return false;
        }
      },
    );
    return opts.interactive
      ? await spawnPty(this.runner, argv, cwd, opts)
      : spawnPiped(this.runner, argv, cwd);
  }

  async console(
    inst: InstanceRecord,
    opts: { width?: number; height?: number },
  ): Promise<ExecProcess> {
    if ((await this.status(inst)) !== "Running") {
      throw new InvalidState(`Instance "${inst.name}" is not running`);
    }
    // lxc-console's own escape (ctrl+_ q) is one nobody types: clients detach by closing.
    const argv = this.#lxc("lxc-console", inst.name, "-t", "0", "-e", "_");
    return await spawnPty(this.runner, argv, "/", { interactive: true, ...opts });
  }

  async consoleLog(inst: InstanceRecord): Promise<Uint8Array> {
    return await Deno.readFile(join(this.dir(inst.name), "console.log")).catch(() =>
      new Uint8Array()
    );
  }

  #hasShell(name: string): boolean {
    try {
      lstatSync(join(this.rootfs(name), "bin", "sh"));
      return true;
    } catch {
      return false;
    }
  }

  async applyLimits(inst: InstanceRecord): Promise<void> {
    await this.#writeConfig(inst);
    if ((await this.status(inst)) === "Stopped") return;
    const settings = limitSettings(await hostLayout(this.runner), limitsFromConfig(inst.config));
    for (const s of settings) {
      const r = await this.runner.run(this.#lxc("lxc-cgroup", inst.name, s.key, s.value), {
        allowFailure: true,
      });
      if (r.code !== 0) {
        throw new Error(
          `Could not apply ${s.key}=${s.value} to "${inst.name}": ${r.stderr.trim()}`,
        );
      }
    }
  }
}
