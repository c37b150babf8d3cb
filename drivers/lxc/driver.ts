/** System containers through the host's LXC tools, kept under the daemon's own LXC path. */
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { availableParallelism, totalmem } from "node:os";
import { isTrue } from "../../contract/units.ts";
import { BadRequest, Conflict, InvalidState, NotFound } from "../../contract/errors.ts";
import {
  type Driver,
  type DriverInfo,
  type ExecOptions,
  type ExecProcess,
  type ExecRequest,
  type ImageSource,
  type InstanceMetrics,
  type InstanceSpec,
  type RecoveryReport,
  type StopOptions,
  subdirs,
  type VolatileChanges,
  withConfig,
} from "../driver.ts";
import type { InstanceRuntime, PowerState } from "../../contract/instance_state.ts";
import type { Runner } from "../runner.ts";
import { parseProcNet, procNetFiles } from "./procnet.ts";
import { readHostFile, readHostFiles } from "../hostfs.ts";
import { hostLayout, limitSettings, limitsFromConfig, payloadInit, readUsage } from "./cgroups.ts";
import { lxcConfig } from "./config.ts";
import { hostIdMap, type IdMap, idmapJson, shiftTree } from "./idmap.ts";
import { attachPlan, execEnvironment, spawnPiped, spawnPty } from "./attach.ts";
import {
  ConfinedFiles,
  type ConfinedTarget,
  enterRunning,
  enterStopped,
} from "../forkfile/client.ts";
import type { FileAccess } from "../files.ts";
import { idRanges, LxcFileAccess } from "./files.ts";
import { readMetrics } from "./metrics.ts";
import { readNetwork } from "./network.ts";
import { LxcSnapshots, recoverTemp } from "./snapshots.ts";
import {
  kindMode,
  type PoolStorage,
  removeInstanceDir,
  renameInstanceDir,
} from "../storage/pool.ts";

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

/** The cgroup controller each live limit key sets. */
const LIMIT_CONTROLLERS: Record<string, string> = {
  "limits.memory": "memory",
  "limits.processes": "pids",
  "limits.cpu": "cpuset",
};

/** `init.pid` of a container outpost stopped (or never started), and of one being started. */
const STOPPED = "0";
const UNKNOWN = "";

export class LxcDriver implements Driver {
  readonly type = "container" as const;
  #info: DriverInfo = { name: "lxc", version: "", available: false, error: "not probed" };
  #idmap?: IdMap;
  /** Image volumes being made, by directory: concurrent creates wait for one unpack. */
  #volumes = new Map<string, Promise<string>>();

  readonly files: FileAccess;
  readonly snapshots: LxcSnapshots;
  readonly confined: ConfinedFiles;

  constructor(readonly lxcPath: string, private runner: Runner, helperDir: string) {
    // Every access to a container's files runs in a helper rooted in the container (its init's
    // root while it runs, so its own mounts are what is seen) and inside its user namespace.
    this.confined = new ConfinedFiles({ runner, workDir: helperDir });
    this.files = new LxcFileAccess(this.confined, (inst) => this.#target(inst));
    this.snapshots = new LxcSnapshots((name) => this.dir(name), runner);
  }

  /** Ends the file helpers (the daemon is stopping). */
  close(): void {
    this.confined.close();
  }

  /** Readies the file helper; a message when it cannot run in a user namespace. */
  async prepareFiles(): Promise<string | undefined> {
    return await this.confined.prepare(idRanges(idmapJson(this.#hostIdMap())));
  }

  /** How the file helper enters `inst`: its running init, or its rootfs when stopped. */
  async #target(inst: InstanceSpec): Promise<ConfinedTarget> {
    const privileged = isTrue(inst.config["security.privileged"]);
    const { status, pid } = await this.#info2(inst.name);
    if (status === "Error") {
      throw new InvalidState(`Storage of instance "${inst.name}" is missing or unreadable`);
    }
    if (status !== "Stopped" && pid > 0) {
      return {
        enter: enterRunning(pid, privileged),
        root: { kind: "pid", pid, cgroup: `lxc.payload.${inst.name}`, sameUserns: !privileged },
      };
    }
    return this.#stoppedTarget(inst);
  }

  /** The rootfs of a stopped container, entered with the map its files are shifted to. */
  #stoppedTarget(inst: InstanceSpec): ConfinedTarget {
    const map = idRanges(inst.config["volatile.last_state.idmap"] ?? "[]");
    return { enter: enterStopped(map), root: { kind: "dir", path: this.rootfs(inst.name) } };
  }

  /** Writes /etc/hostname of a stopped container (skipped when it has no /etc). */
  async #writeHostname(inst: InstanceSpec): Promise<void> {
    await this.confined.write(this.#stoppedTarget(inst), {
      path: "/etc/hostname",
      type: "file",
      append: false,
      data: new TextEncoder().encode(`${inst.name}\n`),
    }).catch((err) => {
      if (!(err instanceof NotFound)) throw err;
    });
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

  async create(created: InstanceSpec, image: ImageSource): Promise<VolatileChanges> {
    // A fresh rootfs carries the image's ids: shifting starts from an empty map.
    let inst = withConfig(created, { "volatile.last_state.idmap": "[]" });
    await this.#makeDir(inst);
    try {
      let base = "[]";
      const pool = inst.pool;
      if (pool && image.fingerprint) {
        // Cloned from the image unpacked once on the pool (a snapshot on btrfs).
        const volume = await this.#imageVolume(pool.storage, image.fingerprint, image.file);
        await pool.storage.clone(join(volume, "rootfs"), this.rootfs(inst.name));
        base = await Deno.readTextFile(join(volume, "idmap"));
      } else {
        await this.#unpack(image.file, this.dir(inst.name), this.rootfs(inst.name));
      }
      inst = withConfig(inst, { "volatile.last_state.idmap": base });
      const changes = { "volatile.last_state.idmap": base, ...this.#shiftForConfig(inst) };
      inst = withConfig(inst, changes);
      await this.#finishStorage(inst);
      return changes;
    } catch (err) {
      // A failed create leaves nothing behind.
      await removeInstanceDir(this.dir(inst.name)).catch(() => {});
      throw err;
    }
  }

  /** Makes a new container's directory (on its pool, if it has one); Conflict if it exists. */
  async #makeDir(inst: InstanceSpec): Promise<void> {
    const dir = this.dir(inst.name);
    if (await Deno.lstat(dir).then(() => true, () => false)) {
      throw new Conflict(
        `Storage for "${inst.name}" already exists in ${this.lxcPath}: remove it first`,
      );
    }
    if (inst.pool) await inst.pool.storage.makeInstanceDir("containers", inst.name, dir, 0o711);
    else await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
  }

  /** Unpacks an image tarball's `rootfs/` to `rootfs`, through a temp dir in `workDir`. */
  async #unpack(file: string, workDir: string, rootfs: string): Promise<void> {
    const unpack = join(workDir, `.unpack-${crypto.randomUUID()}`);
    await Deno.mkdir(unpack, { mode: 0o700 });
    try {
      await this.runner.run([
        "tar",
        "-xf",
        file,
        "-C",
        unpack,
        "--numeric-owner",
        "-p",
        "--xattrs-include=*",
        "--exclude=dev/*",
      ]);
      const unpacked = join(unpack, "rootfs");
      if (!existsSync(unpacked)) throw new BadRequest("The image has no rootfs/ directory");
      await Deno.rename(unpacked, rootfs);
    } finally {
      await Deno.remove(unpack, { recursive: true }).catch(() => {});
    }
  }

  /**
   * The image unpacked on a pool (`images/FINGERPRINT/rootfs`, shifted to the host's id map,
   * which `idmap` records), made on first use; containers are cloned from it.
   */
  #imageVolume(storage: PoolStorage, fingerprint: string, file: string): Promise<string> {
    const dir = join(storage.dir("images"), fingerprint);
    const pending = this.#volumes.get(dir);
    if (pending) return pending;
    const making = (async () => {
      if (existsSync(join(dir, "idmap"))) return dir;
      await Deno.mkdir(storage.dir("images"), { recursive: true, mode: kindMode("images") });
      const tmp = join(storage.dir("images"), `.tmp-${crypto.randomUUID()}`);
      await Deno.mkdir(tmp, { mode: 0o711 });
      try {
        if (storage.layout.driver === "btrfs") {
          // The rootfs is a subvolume, so each clone is a snapshot of it: unpacked beside it, then
          // moved in (reflinked: no data is copied).
          const work = join(tmp, "work");
          await Deno.mkdir(work, { mode: 0o700 });
          await this.#unpack(file, work, join(work, "rootfs"));
          await storage.makeVolume(join(tmp, "rootfs"));
          await this.runner.run(
            ["cp", "-a", "--reflink=auto", "--", `${work}/rootfs/.`, join(tmp, "rootfs")],
          );
          await Deno.remove(work, { recursive: true });
        } else {
          await this.#unpack(file, tmp, join(tmp, "rootfs"));
        }
        const map = this.#hostIdMap();
        shiftTree(join(tmp, "rootfs"), map.uid.hostBase, map.gid.hostBase);
        await Deno.writeTextFile(join(tmp, "idmap"), idmapJson(map));
        await storage.removeVolume(dir);
        await Deno.rename(tmp, dir);
        return dir;
      } catch (err) {
        await storage.removeVolume(tmp).catch(() => {});
        throw err;
      }
    })();
    this.#volumes.set(dir, making);
    making.finally(() => this.#volumes.delete(dir)).catch(() => {});
    return making;
  }

  /**
   * Shifts the rootfs when the wanted id map differs from the one it was last shifted to; returns
   * the id-map keys to record.
   */
  #shiftForConfig(inst: InstanceSpec): VolatileChanges {
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
    }
    return { "volatile.last_state.idmap": wantJson, "volatile.idmap.current": wantJson };
  }

  /** A new container's storage, made: its hostname, its LXC config, and stopped. */
  async #finishStorage(inst: InstanceSpec): Promise<void> {
    await this.#writeHostname(inst);
    await this.#writeConfig(inst);
    await this.#recordInit(inst.name, STOPPED);
  }

  async #writeConfig(inst: InstanceSpec): Promise<void> {
    const text = lxcConfig({
      name: inst.name,
      dir: this.dir(inst.name),
      config: inst.config,
      idmap: this.#hostIdMap(),
      layout: await hostLayout(this.runner),
      seccompProfile: SECCOMP_PROFILES.find((p) => existsSync(p)),
      host: { cpus: availableParallelism(), memory: totalmem() },
      nics: inst.nics,
      mounts: inst.mounts,
    });
    await Deno.writeTextFile(join(this.dir(inst.name), "config"), text);
  }

  async start(stopped: InstanceSpec): Promise<VolatileChanges> {
    const status = await this.status(stopped);
    if (status !== "Stopped") {
      throw new InvalidState(`Instance "${stopped.name}" is already ${status.toLowerCase()}`);
    }
    const changes = this.#shiftForConfig(stopped);
    const inst = withConfig(stopped, changes);
    if (!isTrue(inst.config["security.privileged"])) checkSearchable(this.rootfs(inst.name));
    await this.#writeConfig(inst);
    const log = join(this.dir(inst.name), "lxc.log");
    await Deno.writeTextFile(log, "");
    // Unknown until the start is done: a daemon killed meanwhile leaves LXC the judge.
    await this.#recordInit(inst.name, UNKNOWN);
    // LXC's monitor process writes its pid: a stop is over only once the monitor is gone.
    const r = await this.runner.run(
      this.#lxc("lxc-start", inst.name, "--pidfile", this.#monitorPidfile(inst.name)),
      { allowFailure: true },
    );
    if (r.code !== 0) {
      const detail = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n")
        .filter((l) => l.includes("ERROR")).slice(-3).map((l) => l.replace(/^.* - /, "")).join(
          "; ",
        );
      throw new Error(`Failed to start container "${inst.name}"${detail ? `: ${detail}` : ""}`);
    }
    await this.runner.run(this.#lxc("lxc-wait", inst.name, "-s", "RUNNING", "-t", "10"));
    // The init's pid, asked once here: every status after this reads the kernel's files.
    const { pid } = await this.#lxcInfo(inst.name);
    if (pid > 0) await this.#recordInit(inst.name, String(pid));
    return changes;
  }

  async stop(inst: InstanceSpec, opts: StopOptions): Promise<void> {
    const status = await this.status(inst);
    if (status !== "Stopped") {
      if (opts.force) {
        await this.runner.run(this.#lxc("lxc-stop", inst.name, "-k"));
      } else {
        if (status === "Frozen") await this.unfreeze(inst);
        await this.runner.run(this.#lxc("lxc-stop", inst.name, "-t", String(opts.timeout)));
      }
    }
    await this.#monitorGone(inst.name);
    await this.#recordInit(inst.name, STOPPED);
  }

  async freeze(inst: InstanceSpec): Promise<void> {
    await this.runner.run(this.#lxc("lxc-freeze", inst.name));
  }

  async unfreeze(inst: InstanceSpec): Promise<void> {
    await this.runner.run(this.#lxc("lxc-unfreeze", inst.name));
  }

  async delete(inst: InstanceSpec): Promise<void> {
    if ((await this.status(inst)) !== "Stopped") {
      await this.runner.run(this.#lxc("lxc-stop", inst.name, "-k"), { allowFailure: true });
    }
    await this.#monitorGone(inst.name);
    await removeInstanceDir(this.dir(inst.name));
  }

  async rename(inst: InstanceSpec, newName: string): Promise<void> {
    if (existsSync(this.dir(newName))) {
      throw new Conflict(
        `Storage for "${newName}" already exists in ${this.lxcPath}: remove it first`,
      );
    }
    await renameInstanceDir(this.dir(inst.name), this.dir(newName));
    // The config names its own paths and the UTS name: write it anew for the new name.
    const renamed = { ...inst, name: newName };
    await this.#writeConfig(renamed);
    await this.#writeHostname(renamed);
  }

  async copy(
    source: InstanceSpec,
    target: InstanceSpec,
    opts: { from?: string; snapshots: string[] },
  ): Promise<VolatileChanges> {
    const from = opts.from
      ? join(this.snapshots.path(source.name, opts.from), "rootfs")
      : this.rootfs(source.name);
    if (!existsSync(from)) {
      throw new NotFound(
        `Storage of "${source.name}${opts.from ? `/${opts.from}` : ""}" is missing`,
      );
    }
    await this.#makeDir(target);
    try {
      // The copy keeps the source's shifted ownership: the target records the same id map.
      const cp = (a: string, b: string) =>
        this.runner.run(["cp", "-a", "--reflink=auto", "--", a, b]);
      await cp(from, this.rootfs(target.name));
      if (opts.snapshots.length > 0) {
        await Deno.mkdir(this.snapshots.root(target.name), { mode: 0o700 });
        for (const snap of opts.snapshots) {
          await cp(this.snapshots.path(source.name, snap), this.snapshots.path(target.name, snap));
        }
      }
      await this.#finishStorage(target);
      return {};
    } catch (err) {
      await removeInstanceDir(this.dir(target.name)).catch(() => {});
      throw err;
    }
  }

  async publish(
    inst: InstanceSpec,
    opts: { from?: string; metadata: Record<string, unknown>; out: string },
  ): Promise<void> {
    const parent = opts.from ? this.snapshots.path(inst.name, opts.from) : this.dir(inst.name);
    if (!existsSync(join(parent, "rootfs"))) {
      throw new NotFound(`Storage of "${inst.name}${opts.from ? `/${opts.from}` : ""}" is missing`);
    }
    const tmp = join(this.dir(inst.name), `.publish-${crypto.randomUUID()}`);
    await Deno.mkdir(tmp, { mode: 0o700 });
    try {
      // JSON is YAML: every value is escaped for the format by construction.
      await Deno.writeTextFile(join(tmp, "metadata.yaml"), JSON.stringify(opts.metadata) + "\n");
      const args = ["tar", ...await unshiftArgs(inst, tmp)];
      args.push("-czf", opts.out, "-C", tmp, "metadata.yaml", "-C", parent, "rootfs");
      await this.runner.run(args);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  }

  /**
   * Writes a backup of a stopped or frozen container to `out`: Incus's layout (`backup/index.yaml`,
   * `backup/container/rootfs/`, `backup/snapshots/NAME/rootfs/`), its files at the ids the
   * container sees.
   */
  async backup(
    inst: InstanceSpec,
    opts: { snapshots: string[]; index: Record<string, unknown>; out: string },
  ): Promise<void> {
    const dir = this.dir(inst.name);
    const tmp = join(dir, `.backup-${crypto.randomUUID()}`);
    await Deno.mkdir(join(tmp, "backup"), { recursive: true, mode: 0o700 });
    try {
      await Deno.writeTextFile(
        join(tmp, "backup", "index.yaml"),
        JSON.stringify(opts.index) + "\n",
      );
      const args = ["tar", ...await unshiftArgs(inst, tmp)];
      // S: symlink targets are the container's own paths, never renamed.
      args.push(
        "--transform=s,^rootfs,backup/container/rootfs,S",
        "--transform=s,^snapshots/,backup/snapshots/,S",
        "-czf",
        opts.out,
        "-C",
        tmp,
        "backup/index.yaml",
        "-C",
        dir,
        "rootfs",
        ...opts.snapshots.map((s) => `snapshots/${s}/rootfs`),
      );
      await this.runner.run(args);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  }

  /**
   * Makes `target`'s storage from a checked backup file (rootfs and snapshots at the container's
   * own ids, shifted here into the host's range); a failure leaves nothing.
   */
  async restoreBackup(
    target: InstanceSpec,
    opts: { file: string; snapshots: string[] },
  ): Promise<VolatileChanges> {
    const dir = this.dir(target.name);
    await this.#makeDir(target);
    try {
      const tmp = join(dir, ".unpack");
      await Deno.mkdir(tmp, { mode: 0o700 });
      // GNU tar makes a link that leads out (absolute, or with "..") last, as a placeholder until
      // then, so no member is written through one: such a backup fails here, a 400.
      const r = await this.runner.run([
        "tar",
        "-xzf",
        opts.file,
        "-C",
        tmp,
        "--numeric-owner",
        "-p",
        "--xattrs-include=*",
      ], { allowFailure: true });
      if (r.code !== 0) {
        throw new BadRequest(
          `Invalid backup: it cannot be unpacked: ${r.stderr.trim().split("\n")[0].slice(0, 300)}`,
        );
      }
      await Deno.rename(join(tmp, "backup", "container", "rootfs"), this.rootfs(target.name));
      if (opts.snapshots.length > 0) {
        await Deno.mkdir(this.snapshots.root(target.name), { mode: 0o700 });
        for (const s of opts.snapshots) {
          await Deno.mkdir(this.snapshots.path(target.name, s), { mode: 0o700 });
          await Deno.rename(
            join(tmp, "backup", "snapshots", s, "rootfs"),
            join(this.snapshots.path(target.name, s), "rootfs"),
          );
        }
      }
      await Deno.remove(tmp, { recursive: true });
      const want = isTrue(target.config["security.privileged"]) ? undefined : this.#hostIdMap();
      if (want) {
        for (
          const root of [
            this.rootfs(target.name),
            ...opts.snapshots.map((s) => join(this.snapshots.path(target.name, s), "rootfs")),
          ]
        ) {
          shiftTree(root, want.uid.hostBase, want.gid.hostBase);
        }
      }
      const json = want ? idmapJson(want) : "[]";
      const changes = { "volatile.last_state.idmap": json, "volatile.idmap.current": json };
      const inst = withConfig(target, changes);
      await this.#finishStorage(inst);
      return changes;
    } catch (err) {
      await removeInstanceDir(dir).catch(() => {});
      throw err;
    }
  }

  async storageNames(): Promise<string[]> {
    return await subdirs(this.lxcPath);
  }

  async recover(inst: InstanceSpec, snapshots: string[]): Promise<RecoveryReport> {
    const actions = [...await recoverTemp(this.dir(inst.name))];
    const { removed, missing } = await this.snapshots.reconcile(inst.name, snapshots);
    for (const s of removed) actions.push(`removed snapshot storage "${s}" that had no record`);
    return { actions, missingSnapshots: missing };
  }

  #pidfile(name: string): string {
    return join(this.dir(name), "init.pid");
  }

  #monitorPidfile(name: string): string {
    return join(this.dir(name), "monitor.pid");
  }

  /**
   * Waits (up to 10 s) for the container's LXC monitor to exit. lxc-stop returns when the
   * container is down, a little before its monitor has cleaned up: the container's directory
   * must not be removed or moved under it.
   */
  async #monitorGone(name: string): Promise<void> {
    const pid = Number(
      (await Deno.readTextFile(this.#monitorPidfile(name)).catch(() => "")).trim(),
    );
    if (!Number.isSafeInteger(pid) || pid <= 0) return;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const cmdline = await readHostFile(this.runner, `/proc/${pid}/cmdline`);
      if (!cmdline?.startsWith("[lxc monitor]") || !cmdline.includes(name)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Records what is known of the container's init in `init.pid` (see `#info2`). */
  async #recordInit(name: string, what: string): Promise<void> {
    await Deno.writeTextFile(this.#pidfile(name), what).catch(() => {});
  }

  /**
   * Status and init pid, without a process when outpost knows them. `init.pid` holds the init's
   * pid (written once the container started), "0" (stopped by outpost, or never started) or
   * nothing (a start under way or interrupted). A pid is checked with the kernel (through /proc
   * and the cgroup files): still in the container's cgroup, and frozen or not. Anything else (no
   * file, an empty one, a pid that died because the container stopped on its own) asks
   * `lxc-info`, and a running init found so is recorded.
   */
  async #info2(name: string): Promise<{ status: PowerState; pid: number }> {
    if (!existsSync(join(this.dir(name), "config"))) return { status: "Error", pid: -1 };
    const recorded = (await Deno.readTextFile(this.#pidfile(name)).catch(() => "")).trim();
    if (recorded === STOPPED) return { status: "Stopped", pid: -1 };
    const init = await payloadInit(this.runner, name, Number(recorded));
    if (init) return { status: init.frozen ? "Frozen" : "Running", pid: Number(recorded) };
    const info = await this.#lxcInfo(name);
    if (info.pid > 0 && info.status !== "Stopped") await this.#recordInit(name, String(info.pid));
    return info;
  }

  async #lxcInfo(name: string): Promise<{ status: PowerState; pid: number }> {
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

  async status(inst: InstanceSpec): Promise<PowerState> {
    return (await this.#info2(inst.name)).status;
  }

  async state(inst: InstanceSpec): Promise<InstanceRuntime> {
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
      // The kernel's files first (no process); `ip` in the namespace for what they lack.
      runtime.network = parseProcNet(await readHostFiles(this.runner, procNetFiles(pid))) ??
        await readNetwork(this.runner, pid);
    }
    return runtime;
  }

  async metrics(inst: InstanceSpec): Promise<InstanceMetrics> {
    const { pid } = await this.#info2(inst.name);
    if (pid <= 0) throw new InvalidState(`Instance "${inst.name}" is not running`);
    return await readMetrics(this.runner, pid, this.rootfs(inst.name));
  }

  /** Starts a command; the caller (the instance manager) has checked the container runs. */
  async exec(inst: InstanceSpec, req: ExecRequest, opts: ExecOptions): Promise<ExecProcess> {
    const env = execEnvironment(req, opts.interactive);
    const { argv, cwd } = attachPlan(
      this.lxcPath,
      inst.name,
      req,
      env,
      true,
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
    inst: InstanceSpec,
    opts: { width?: number; height?: number },
  ): Promise<ExecProcess> {
    if ((await this.status(inst)) !== "Running") {
      throw new InvalidState(`Instance "${inst.name}" is not running`);
    }
    // lxc-console's own escape (ctrl+_ q) is one nobody types: clients detach by closing.
    const argv = this.#lxc("lxc-console", inst.name, "-t", "0", "-e", "_");
    return await spawnPty(this.runner, argv, "/", { interactive: true, ...opts });
  }

  runtimeLogs(inst: InstanceSpec): Record<string, string> {
    return { "lxc.log": join(this.dir(inst.name), "lxc.log") };
  }

  async consoleLog(inst: InstanceSpec): Promise<Uint8Array> {
    return await Deno.readFile(join(this.dir(inst.name), "console.log")).catch(() =>
      new Uint8Array()
    );
  }

  async applyLimits(inst: InstanceSpec, changed: string[]): Promise<void> {
    await this.#writeConfig(inst);
    if ((await this.status(inst)) === "Stopped") return;
    const controllers = new Set(changed.map((k) => LIMIT_CONTROLLERS[k]).filter(Boolean));
    const settings = limitSettings(await hostLayout(this.runner), limitsFromConfig(inst.config))
      .filter((s) => controllers.has(s.key.split(".")[0]));
    for (const s of settings) {
      // "--": a value such as -1 (no memory limit on cgroup v1) is not an option.
      const r = await this.runner.run(this.#lxc("lxc-cgroup", inst.name, "--", s.key, s.value), {
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

/**
 * tar options that write a container's files at the ids it sees: its rootfs is shifted into the
 * host's range, and the recorded id map gives one map line an id (files in `tmp`).
 */
async function unshiftArgs(inst: InstanceSpec, tmp: string): Promise<string[]> {
  const args = ["--numeric-owner", "--xattrs", "--xattrs-include=*"];
  const map = JSON.parse(inst.config["volatile.last_state.idmap"] ?? "[]") as {
    Isuid: boolean;
    Hostid: number;
    Nsid: number;
    Maprange: number;
  }[];
  for (const [uid, flag] of [[true, "--owner-map"], [false, "--group-map"]] as const) {
    const e = map.find((m) => m.Isuid === uid);
    if (!e || e.Hostid === e.Nsid) continue;
    const file = join(tmp, uid ? "uid.map" : "gid.map");
    const lines: string[] = [];
    for (let i = 0; i < e.Maprange; i++) lines.push(`+${e.Hostid + i} +${e.Nsid + i}`);
    await Deno.writeTextFile(file, lines.join("\n") + "\n");
    args.push(`${flag}=${file}`);
  }
  return args;
}
