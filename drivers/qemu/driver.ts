/**
 * Virtual machines through QEMU: a qcow2 overlay on the image's disk, a daemonized QEMU per VM
 * (it outlives the daemon), one long-lived QMP connection per VM for lifecycle, the guest agent
 * for exec and files, and a serial console on a unix socket whose log keeps the boot.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { BadRequest, InvalidState, messageOf } from "../../contract/errors.ts";
import { qemuMetrics } from "./metrics.ts";
import { vmCpus, vmMemoryMiB } from "./sizing.ts";
import {
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
} from "../driver.ts";
import type { InstanceRuntime, PowerState } from "../../contract/instance_state.ts";
import { readHostFiles } from "../hostfs.ts";
import type { ProbedDriver } from "../registry.ts";
import type { Runner } from "../runner.ts";
import { type Accel, qemuArgs, vmPaths } from "./args.ts";
import { type AccelProbe, probeKvm, resolveAccel } from "./accel.ts";
import { QgaClient } from "./qga.ts";
import { QmpClient } from "./qmp.ts";
import type { CommandFiles } from "../command_files.ts";
import { qgaFiles } from "./files.ts";
import { consoleProcess, guestExecProcess } from "./guest_exec.ts";
import { guestNetwork } from "./network.ts";
import { QemuSnapshots } from "./snapshots.ts";
import { VmBackups } from "./backup.ts";
import { removeInstanceDir, renameInstanceDir } from "../storage/pool.ts";
import {
  BOOT_FILES,
  type BootFile,
  INITRD,
  KERNEL,
  linkOrCopy,
  ovmfCode,
  ovmfVarsTemplate,
  readBootFile,
  VARS,
  writeBootFile,
} from "./boot.ts";

export const QEMU = "qemu-system-x86_64";

export interface QemuDriverOptions {
  /** Where VM directories live (`STATE/virtual-machines`). */
  path: string;
  runner: Runner;
  /** The server config (`core.vm_accel`). */
  serverConfig: () => Record<string, string>;
  /** Where the KVM probe result is cached. */
  probeCache: string;
  log?: (msg: string) => void;
}

export class QemuDriver implements ProbedDriver {
  readonly type = "virtual-machine" as const;
  readonly files: CommandFiles;
  readonly snapshots: QemuSnapshots;
  #info: DriverInfo = { name: "qemu", version: "", available: false, error: "not probed" };
  #accel?: Promise<AccelProbe>;
  #accelResult?: AccelProbe;
  #qmp = new Map<string, Promise<QmpClient | undefined>>();
  #qga = new Map<string, QgaClient>();
  #runner: Runner;
  #closing = new AbortController();
  #backups: VmBackups;

  constructor(private opts: QemuDriverOptions) {
    this.#runner = opts.runner;
    this.files = qgaFiles((inst) => this.guestAgent(inst));
    this.snapshots = new QemuSnapshots({
      dir: (name) => this.dir(name),
      runner: opts.runner,
      status: (inst) => this.status(inst),
      qmp: async (inst, command, args) => {
        const qmp = await this.#client(inst.name);
        if (!qmp) throw new InvalidState(`Instance "${inst.name}" is not running`);
        return await qmp.execute(command, args);
      },
      guestAgent: (inst) => this.guestAgent(inst, 1000).catch(() => undefined),
      log: opts.log,
    });
    this.#backups = new VmBackups({
      dir: (name) => this.dir(name),
      makeDir: (inst) => this.#makeDir(inst),
      runner: opts.runner,
      status: (inst) => this.status(inst),
      snapshots: this.snapshots,
    });
  }

  async probe(): Promise<DriverInfo> {
    try {
      const r = await this.#runner.run([QEMU, "--version"]);
      const version = /version (\S+)/.exec(r.stdout)?.[1] ?? r.stdout.split("\n")[0];
      await this.#runner.run(["qemu-img", "--version"]);
      this.#info = { name: "qemu", version, available: true, error: "" };
      await Deno.mkdir(this.opts.path, { recursive: true, mode: 0o700 });
      // The KVM probe runs in the background: start-up is not held up, a VM start waits for it.
      this.#accel = probeKvm({
        runner: this.#runner,
        qemu: QEMU,
        cacheFile: this.opts.probeCache,
        workDir: this.opts.path,
        signal: this.#closing.signal,
      }).catch((err): AccelProbe => ({
        usable: false,
        reason: `KVM probe failed: ${messageOf(err)}`,
        ms: 0,
      }))
        .then((p) => {
          this.#accelResult = p;
          const how = p.cached ? "cached probe" : `probe ${p.ms} ms`;
          this.opts.log?.(`KVM ${p.usable ? "usable" : `unusable: ${p.reason}`} (${how})`);
          return p;
        });
    } catch (err) {
      this.#info = { name: "qemu", version: "", available: false, error: messageOf(err) };
    }
    return this.#info;
  }

  /** Ends background work (a KVM probe still running) and closes QMP connections. */
  close(): void {
    this.#closing.abort();
    for (const pending of this.#qmp.values()) void pending.then((c) => c?.close());
    for (const qga of this.#qga.values()) qga.close();
  }

  info(): DriverInfo {
    const probe = this.#accelResult;
    const mode = this.#mode();
    const resolved = probe ? resolveAccel(mode, probe) : undefined;
    return {
      ...this.#info,
      details: this.#info.available
        ? {
          vm_accel: mode,
          kvm: probe ? (probe.usable ? "usable" : `unusable: ${probe.reason}`) : "probing",
          accelerator: resolved
            ? ("accel" in resolved ? resolved.accel : `none: ${resolved.error}`)
            : "probing",
        }
        : undefined,
    };
  }

  #mode(): "auto" | "kvm" | "tcg" {
    const m = this.opts.serverConfig()["core.vm_accel"];
    return m === "kvm" || m === "tcg" ? m : "auto";
  }

  /** The accelerator a VM starts with now, or a Conflict naming why none is usable. */
  async accelerator(): Promise<Accel> {
    const probe = await (this.#accel ?? Promise.reject(new Error("QEMU is unavailable")));
    const r = resolveAccel(this.#mode(), probe);
    if ("error" in r) throw new InvalidState(r.error);
    return r.accel;
  }

  dir(name: string): string {
    return join(this.opts.path, name);
  }

  #paths(name: string) {
    return vmPaths(this.dir(name));
  }

  async create(inst: InstanceSpec, image: ImageSource): Promise<VolatileChanges> {
    if (!image.dir) throw new BadRequest("The image has no VM disk (rootfs.img)");
    const dir = this.dir(inst.name);
    if (existsSync(dir)) {
      throw new InvalidState(`Storage for VM "${inst.name}" already exists: ${dir}`);
    }
    await this.#makeDir(inst);
    try {
      const base = join(image.dir, "rootfs.img");
      const info = JSON.parse(
        (await this.#runner.run(["qemu-img", "info", "--output=json", base])).stdout,
      );
      await this.#runner.run([
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base,
        "-F",
        info.format,
        join(dir, "disk.qcow2"),
      ]);
      let boot: BootFile;
      if (image.boot) {
        // The VM keeps its own kernel and initrd (hard links where possible): they stay with it
        // whatever happens to the image.
        await linkOrCopy(image.boot.kernel, join(dir, KERNEL));
        if (image.boot.initrd) await linkOrCopy(image.boot.initrd, join(dir, INITRD));
        boot = { kind: "kernel", cmdline: image.boot.cmdline };
      } else {
        await Deno.copyFile(ovmfVarsTemplate("The image"), join(dir, VARS));
        boot = { kind: "uefi" };
      }
      await writeBootFile(dir, boot);
    } catch (err) {
      await removeInstanceDir(dir).catch(() => {});
      throw err;
    }
    return {};
  }

  /** A new VM's directory, on its pool when it has one (the driver's own path links to it). */
  async #makeDir(inst: InstanceSpec): Promise<void> {
    const dir = this.dir(inst.name);
    if (inst.pool) {
      await inst.pool.storage.makeInstanceDir("virtual-machines", inst.name, dir, 0o700);
    } else {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    }
  }

  /** The open QMP connection to a running VM, reattaching after a daemon restart. */
  #client(name: string): Promise<QmpClient | undefined> {
    const existing = this.#qmp.get(name);
    if (existing) return existing;
    const connecting = (async () => {
      const p = this.#paths(name);
      if (!existsSync(p.qmp)) return undefined;
      try {
        const client = await QmpClient.connect(p.qmp, { timeoutMs: 2000 });
        client.closed.then(() => {
          this.#qmp.delete(name);
          this.#qga.get(name)?.close();
          this.#qga.delete(name);
        });
        return client;
      } catch {
        return undefined; // a stale socket: QEMU is gone
      }
    })();
    this.#qmp.set(name, connecting);
    connecting.then((c) => {
      if (!c) this.#qmp.delete(name);
    });
    return connecting;
  }

  async status(inst: InstanceSpec): Promise<PowerState> {
    if (!existsSync(join(this.dir(inst.name), "disk.qcow2"))) return "Error";
    const qmp = await this.#client(inst.name);
    if (!qmp) return "Stopped";
    try {
      const st = await qmp.execute<{ status: string; running: boolean }>(
        "query-status",
        undefined,
        {
          timeoutMs: 2000,
        },
      );
      if (st.running) return "Running";
      if (st.status === "paused") return "Frozen";
      if (st.status === "shutdown") return "Stopped";
      return "Running";
    } catch {
      return "Stopped";
    }
  }

  #spec(inst: InstanceSpec, accel: Accel) {
    const dir = this.dir(inst.name);
    const boot = readBootFile(dir);
    const cpus = vmCpus(inst.config);
    const memoryMiB = vmMemoryMiB(inst.config, Deno.systemMemoryInfo().total);
    return {
      name: inst.name,
      uuid: inst.config["volatile.uuid"] ?? crypto.randomUUID(),
      dir,
      accel,
      cpu: accel === "tcg" ? "max" : "host",
      cpus: Math.min(cpus, availableParallelism() * 4),
      memoryMiB: Math.max(64, memoryMiB),
      disk: join(dir, "disk.qcow2"),
      nics: (inst.nics ?? []).map((n) => ({ tap: n.hostName, mac: n.hwaddr })),
      disks: (inst.disks ?? []).map((d) => ({ ...d })),
      boot: boot.kind === "kernel"
        ? {
          kind: "kernel" as const,
          kernel: join(dir, KERNEL),
          initrd: existsSync(join(dir, INITRD)) ? join(dir, INITRD) : undefined,
          cmdline: boot.cmdline ?? "",
        }
        : { kind: "uefi" as const, code: ovmfCode()!, vars: join(dir, VARS) },
    };
  }

  async start(inst: InstanceSpec): Promise<VolatileChanges> {
    const status = await this.status(inst);
    if (status !== "Stopped") {
      throw new InvalidState(`Instance "${inst.name}" is already ${status.toLowerCase()}`);
    }
    const accel = await this.accelerator();
    const p = this.#paths(inst.name);
    for (const f of [p.qmp, p.qga, p.console, p.pid]) await Deno.remove(f).catch(() => {});
    // A fresh boot log per start (the console log keeps what the guest printed since then).
    await Deno.writeFile(p.consoleLog, new Uint8Array());
    const r = await this.#runner.run(qemuArgs(this.#spec(inst, accel)), { allowFailure: true });
    if (r.code !== 0) {
      const log = await Deno.readTextFile(p.log).catch(() => "");
      const why = (r.stderr.trim() || log.trim()).split("\n").slice(-2).join("; ");
      throw new Error(`QEMU failed to start VM "${inst.name}": ${why}`);
    }
    const qmp = await this.#client(inst.name);
    if (!qmp) throw new Error(`QEMU started VM "${inst.name}" but its QMP socket does not answer`);
    // QEMU made the taps (they go when it exits); they join their bridges before the guest boots
    // far enough to ask for an address.
    for (const nic of inst.nics ?? []) {
      if (nic.bridge) {
        await this.#runner.run(["ip", "link", "set", "dev", nic.hostName, "master", nic.bridge]);
      }
      if (nic.mtu) {
        await this.#runner.run(["ip", "link", "set", "dev", nic.hostName, "mtu", String(nic.mtu)]);
      }
      await this.#runner.run(["ip", "link", "set", "dev", nic.hostName, "up"]);
    }
    return { "volatile.vm.accel": accel };
  }

  async #pid(name: string): Promise<number> {
    const text = await Deno.readTextFile(this.#paths(name).pid).catch(() => "");
    const pid = Number(text.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : -1;
  }

  async stop(inst: InstanceSpec, opts: StopOptions): Promise<void> {
    const qmp = await this.#client(inst.name);
    if (!qmp) return;
    // Read now: QEMU removes its pid file as it exits.
    const pid = await this.#pid(inst.name);
    if (!opts.force) {
      const status = await this.status(inst);
      if (status === "Frozen") await qmp.execute("cont").catch(() => {});
      await qmp.execute("system_powerdown").catch(() => {});
      // QEMU exits when the guest powers off (no -no-shutdown): its QMP connection closes.
      const timeoutMs = opts.timeout < 0 ? 2 ** 31 - 1 : opts.timeout * 1000;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        qmp.closed.then(() => false),
        new Promise<boolean>((r) => timer = setTimeout(() => r(true), timeoutMs)),
      ]);
      clearTimeout(timer);
      if (!timedOut) return await this.#reap(inst.name, pid);
      this.opts.log?.(`VM ${inst.name} did not power off within ${opts.timeout} s: forcing`);
    }
    await qmp.quit();
    await this.#reap(inst.name, pid);
  }

  /** Whether a process runs (a zombie, dead but not yet reaped by PID 1, does not). */
  async #alive(pid: number): Promise<boolean> {
    const [stat] = await readHostFiles(this.#runner, [`/proc/${pid}/stat`]);
    if (stat === undefined) return false;
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  }

  /** Waits until the QEMU process is gone (it may take a moment after QMP closes). */
  async #reap(name: string, pid: number): Promise<void> {
    for (let i = 0; i < 100 && pid > 0; i++) {
      if (!(await this.#alive(pid))) break;
      if (i === 50) await this.#runner.run(["kill", "-9", String(pid)], { allowFailure: true });
      await new Promise((r) => setTimeout(r, 50));
    }
    const p = this.#paths(name);
    for (const f of [p.qmp, p.qga, p.console, p.pid]) await Deno.remove(f).catch(() => {});
  }

  async freeze(inst: InstanceSpec): Promise<void> {
    const qmp = await this.#client(inst.name);
    if (!qmp) throw new InvalidState(`Instance "${inst.name}" is not running`);
    await qmp.execute("stop");
  }

  async unfreeze(inst: InstanceSpec): Promise<void> {
    const qmp = await this.#client(inst.name);
    if (!qmp) throw new InvalidState(`Instance "${inst.name}" is not running`);
    await qmp.execute("cont");
  }

  /**
   * A stopped VM's disk (its backing image shared, its internal snapshots kept), boot files and
   * UEFI variables, copied; then set to the snapshot `from`, with only `snapshots` left in it.
   */
  async copy(
    source: InstanceSpec,
    target: InstanceSpec,
    opts: { from?: string; snapshots: string[] },
  ): Promise<VolatileChanges> {
    const from = this.dir(source.name);
    const dir = this.dir(target.name);
    if (existsSync(dir)) {
      throw new InvalidState(`Storage for VM "${target.name}" already exists: ${dir}`);
    }
    if ((await this.status(source)) !== "Stopped") {
      if (opts.snapshots.length > 0) {
        throw new InvalidState(
          `VM "${source.name}" is running: copy it without its snapshots (--instance-only), or stop it first`,
        );
      }
      return await this.#copyLive(source, target, opts.from);
    }
    const plan = await this.snapshots.planCopy(source.name, opts);
    await this.#makeDir(target);
    try {
      for (const f of ["disk.qcow2", ...BOOT_FILES]) {
        if (!existsSync(join(from, f))) continue;
        await this.#runner.run(["cp", "--reflink=auto", "--", join(from, f), join(dir, f)]);
      }
      await this.snapshots.finishCopy(source.name, target.name, plan);
    } catch (err) {
      await removeInstanceDir(dir).catch(() => {});
      throw err;
    }
    return {};
  }

  /**
   * A copy of a running (or paused) VM's disk: a live internal snapshot taken for the copy (or the
   * snapshot `from`) read into a new overlay on the same base image (only what differs from it is
   * written), then the temporary snapshot deleted. The boot files are copied as they are.
   */
  async #copyLive(
    source: InstanceSpec,
    target: InstanceSpec,
    from?: string,
  ): Promise<VolatileChanges> {
    const qmp = await this.#client(source.name);
    if (!qmp) throw new InvalidState(`VM "${source.name}" stopped while it was copied: try again`);
    const disk = join(this.dir(source.name), "disk.qcow2");
    // Named like a snapshot's tag: one a kill leaves behind is removed by start-up recovery.
    const temp = from ? undefined : `outpost-${crypto.randomUUID()}`;
    const tag = from ? await this.snapshots.tagOf(source.name, from) : temp!;
    if (temp) await qmp.execute("blockdev-snapshot-internal-sync", { device: "root", name: temp });
    const dir = this.dir(target.name);
    try {
      const info = JSON.parse(
        (await this.#runner.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", disk]))
          .stdout,
      ) as { "full-backing-filename"?: string; "backing-filename-format"?: string };
      const base = info["full-backing-filename"];
      await this.#makeDir(target);
      try {
        await this.#runner.run([
          "qemu-img",
          "convert",
          "-U",
          "-f",
          "qcow2",
          "-l",
          `snapshot.name=${tag}`,
          "-O",
          "qcow2",
          ...(base ? ["-B", base, "-F", info["backing-filename-format"] ?? "raw"] : []),
          disk,
          join(dir, "disk.qcow2"),
        ]);
        for (const f of BOOT_FILES) {
          const file = join(this.dir(source.name), f);
          if (existsSync(file)) {
            await this.#runner.run(["cp", "--reflink=auto", "--", file, join(dir, f)]);
          }
        }
      } catch (err) {
        await removeInstanceDir(dir).catch(() => {});
        throw err;
      }
    } finally {
      if (temp) {
        await qmp.execute("blockdev-snapshot-delete-internal-sync", { device: "root", name: temp })
          .catch((err) => this.opts.log?.(`VM ${source.name}: temporary snapshot ${temp}: ${err}`));
      }
    }
    return {};
  }

  /** A backup of a stopped VM (drivers/qemu/backup.ts has the layout). */
  async backup(
    inst: InstanceSpec,
    opts: { snapshots: string[]; index: Record<string, unknown>; out: string },
  ): Promise<void> {
    await this.#backups.backup(inst, opts);
  }

  /** A new VM's dir from a checked backup file, its snapshots made anew. */
  async restoreBackup(
    target: InstanceSpec,
    opts: { file: string; snapshots: string[] },
  ): Promise<VolatileChanges> {
    return await this.#backups.restore(target, opts);
  }

  /** An image of a stopped VM or of one of its snapshots. */
  async publish(
    inst: InstanceSpec,
    opts: { from?: string; metadata: Record<string, unknown>; out: string },
  ): Promise<void> {
    await this.#backups.publish(inst, opts);
  }

  async delete(inst: InstanceSpec): Promise<void> {
    if ((await this.status(inst)) !== "Stopped") await this.stop(inst, { force: true, timeout: 0 });
    await removeInstanceDir(this.dir(inst.name));
  }

  async rename(inst: InstanceSpec, newName: string): Promise<void> {
    if (existsSync(this.dir(newName))) {
      throw new InvalidState(`Storage for VM "${newName}" already exists: ${this.dir(newName)}`);
    }
    // Everything in the directory is named relative to it (the overlay's backing file is the
    // image's, by absolute path), so a move is the whole rename.
    await renameInstanceDir(this.dir(inst.name), this.dir(newName));
  }

  async storageNames(): Promise<string[]> {
    return await subdirs(this.opts.path);
  }

  /**
   * Work dirs of a killed backup or publish removed; snapshot storage without a record removed,
   * recorded ones without storage named.
   */
  async recover(inst: InstanceSpec, snapshots: string[]): Promise<RecoveryReport> {
    const removed = await this.#backups.recoverTemp(inst.name);
    const report = await this.snapshots.reconcile(inst, snapshots);
    return { ...report, actions: [...removed, ...report.actions] };
  }

  async state(inst: InstanceSpec): Promise<InstanceRuntime> {
    const status = await this.status(inst);
    const runtime: InstanceRuntime = {
      status,
      pid: -1,
      processes: -1,
      memory: { usage: 0, usage_peak: 0, swap_usage: 0, swap_usage_peak: 0 },
      cpu: { usage: 0 },
      network: {},
    };
    if (status === "Stopped" || status === "Error") return runtime;
    const pid = await this.#pid(inst.name);
    runtime.pid = pid;
    if (pid > 0) {
      const [statusText, stat] = await readHostFiles(this.#runner, [
        `/proc/${pid}/status`,
        `/proc/${pid}/stat`,
      ]);
      const kb = (key: string) =>
        Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(statusText ?? "")?.[1] ?? 0);
      runtime.memory = {
        usage: kb("VmRSS") * 1024,
        usage_peak: kb("VmHWM") * 1024,
        swap_usage: kb("VmSwap") * 1024,
        swap_usage_peak: 0,
      };
      // utime and stime (fields 14 and 15) are in clock ticks (100 per second on Linux).
      const fields = (stat ?? "").slice((stat ?? "").lastIndexOf(")") + 2).split(" ");
      runtime.cpu = { usage: (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 10_000_000 };
    }
    if (status === "Running") {
      const qga = await this.guestAgent(inst, 500).catch(() => undefined);
      if (qga) {
        runtime.network = await guestNetwork(qga).catch(() => ({}));
      }
    }
    return runtime;
  }

  /** The guest agent of a running VM (waits up to `timeoutMs` for it to answer). */
  async guestAgent(inst: InstanceSpec, timeoutMs = 10_000): Promise<QgaClient> {
    if ((await this.status(inst)) !== "Running") {
      throw new InvalidState(`Instance "${inst.name}" is not running`);
    }
    let qga = this.#qga.get(inst.name);
    if (!qga) {
      qga = new QgaClient(this.#paths(inst.name).qga);
      this.#qga.set(inst.name, qga);
    }
    try {
      await qga.waitReady(timeoutMs);
    } catch {
      throw new InvalidState(
        `The guest agent of VM "${inst.name}" is not answering (is qemu-guest-agent running in the guest?)`,
      );
    }
    return qga;
  }

  async exec(inst: InstanceSpec, req: ExecRequest, opts: ExecOptions): Promise<ExecProcess> {
    if (opts.interactive) {
      throw new BadRequest(
        `Interactive exec in a VM is not supported: the guest agent cannot give a PTY; use "outpost console ${inst.name}"`,
      );
    }
    const qga = await this.guestAgent(inst);
    return guestExecProcess(qga, req);
  }

  async console(inst: InstanceSpec): Promise<ExecProcess> {
    if ((await this.status(inst)) === "Stopped") {
      throw new InvalidState(`Instance "${inst.name}" is not running`);
    }
    return await consoleProcess(this.#paths(inst.name).console);
  }

  /** The QEMU process's CPU time and memory (a stopped VM is an InvalidState). */
  async metrics(inst: InstanceSpec): Promise<InstanceMetrics> {
    const pid = await this.#pid(inst.name);
    if (pid < 0) throw new InvalidState(`Instance "${inst.name}" is not running`);
    return await qemuMetrics(this.#runner, pid, inst.config, Deno.systemMemoryInfo().total);
  }

  runtimeLogs(inst: InstanceSpec): Record<string, string> {
    return { "qemu.log": this.#paths(inst.name).log };
  }

  async consoleLog(inst: InstanceSpec): Promise<Uint8Array> {
    return await Deno.readFile(this.#paths(inst.name).consoleLog).catch(() => new Uint8Array());
  }

  async applyLimits(inst: InstanceSpec): Promise<void> {
    if ((await this.status(inst)) !== "Stopped") {
      throw new InvalidState(
        `Limits of VM "${inst.name}" apply when it starts: stop it first, then change them`,
      );
    }
  }
}
