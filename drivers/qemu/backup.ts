/**
 * Backups and images of a stopped VM.
 *
 * A backup is a tarball in Incus's layout for VMs: `backup/index.yaml`, the root disk as a raw
 * image `backup/virtual-machine.img`, its config files under `backup/virtual-machine/` (outpost
 * keeps there what the VM boots with: `boot.json`, `kernel`, `initrd`, `OVMF_VARS.fd`), and per
 * snapshot `backup/virtual-machine-snapshots/NAME.img` with `NAME/` beside it (the snapshot's UEFI
 * variables). The raw images are sparse and stored so (`tar --sparse`): a mostly empty disk stays
 * small. Restored, the disk is a standalone qcow2 (no backing image) whose internal snapshots are
 * made anew, oldest first, through `QemuSnapshots` (fresh tags, a fresh map); each later state is
 * written as its changes from the one before, so they share what did not change.
 *
 * An image is `metadata.yaml` + `rootfs.img` (a standalone qcow2 of the disk or of one snapshot) +
 * `boot/kernel` and `boot/initrd` when the VM boots a kernel directly, named in the metadata's
 * `boot` key as `agent/images.ts` reads it.
 *
 * The VM is stopped throughout: its QEMU holds the disk while it runs. Raw images in a backup are
 * never probed for their format (`-f raw`): a disk that looks like a qcow2 with a backing file
 * could otherwise make `qemu-img` read a host file.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, InvalidState } from "../../contract/errors.ts";
import type { PowerState } from "../../contract/instance_state.ts";
import type { InstanceSpec, VolatileChanges } from "../driver.ts";
import type { Runner } from "../runner.ts";
import { removeInstanceDir } from "../storage/pool.ts";
import {
  BOOT_FILE,
  BOOT_FILES,
  type BootFile,
  BootFileSchema,
  INITRD,
  KERNEL,
  linkOrCopy,
  ovmfVarsTemplate,
  readBootFile,
  VARS,
  writeBootFile,
} from "./boot.ts";
import type { QemuSnapshots } from "./snapshots.ts";

/** Where a VM backup keeps each part (Incus's names). */
export const VM_BACKUP = {
  index: "backup/index.yaml",
  config: "backup/virtual-machine",
  disk: "backup/virtual-machine.img",
  snapshots: "backup/virtual-machine-snapshots",
} as const;

/** A snapshot's raw disk image in a VM backup. */
export function snapshotDisk(snap: string): string {
  return `${VM_BACKUP.snapshots}/${snap}.img`;
}

/** A snapshot's config dir (its UEFI variables) in a VM backup. */
export function snapshotConfig(snap: string): string {
  return `${VM_BACKUP.snapshots}/${snap}`;
}

/** Work dirs a kill can leave in a VM's dir: a backup or an image being staged, an import. */
const TEMP = /^\.(backup|publish)-[0-9a-f-]{36}$|^\.unpack$/;

/** The largest `boot.json` read from a backup. */
const MAX_BOOT_FILE_BYTES = 64 * 1024;

/** One member of a backup tarball as `tar -tv` lists it (`type`: the mode's first letter). */
export interface BackupMember {
  path: string;
  type: string;
}

/**
 * Checks the members of a VM backup (paths without `./`): only directories and regular files, each
 * where the layout has a place for it (the snapshots named in the index, no others), the disk and
 * every snapshot's disk present. Throws BadRequest naming the first fault.
 */
export function checkVmBackupMembers(members: BackupMember[], snapshots: string[]): void {
  const snapshotPlace = (rest: string) =>
    snapshots.some((s) => rest === `${s}.img` || rest === s || rest.startsWith(`${s}/`));
  const files = new Set<string>();
  for (const m of members) {
    const path = m.path.replace(/\/+$/, "");
    const shown = path.slice(0, 120);
    if (m.type !== "-" && m.type !== "d") {
      throw new BadRequest(
        `Invalid backup: "${shown}" is a link or a special file (a VM backup holds only files and directories)`,
      );
    }
    const inSnapshots = path.startsWith(`${VM_BACKUP.snapshots}/`);
    const placed = path === "backup" || path === VM_BACKUP.index || path === VM_BACKUP.disk ||
      path === VM_BACKUP.config || path.startsWith(`${VM_BACKUP.config}/`) ||
      path === VM_BACKUP.snapshots ||
      (inSnapshots && snapshotPlace(path.slice(VM_BACKUP.snapshots.length + 1)));
    if (!placed) {
      throw new BadRequest(
        `Invalid backup: "${shown}" has no place in a VM backup${
          inSnapshots ? " (a snapshot the index does not name)" : ""
        }`,
      );
    }
    if (m.type === "-") files.add(path);
  }
  if (!files.has(VM_BACKUP.disk)) {
    throw new BadRequest(`Invalid backup: it has no ${VM_BACKUP.disk}`);
  }
  for (const s of snapshots) {
    if (!files.has(snapshotDisk(s))) {
      throw new BadRequest(`Invalid backup: snapshot "${s}" has no disk (${snapshotDisk(s)})`);
    }
  }
}

/**
 * The `qemu-img` commands that make the current state of the qcow2 `disk` the raw `image`, writing
 * only the clusters where they differ (the rest stays shared with the disk's internal snapshots):
 * an overlay `changes` on the image is rebased onto the disk (which copies into it what differs),
 * then committed into the disk.
 */
export function writeChangesArgv(image: string, disk: string, changes: string): string[][] {
  return [
    ["qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "raw", changes],
    ["qemu-img", "rebase", "-q", "-f", "qcow2", "-b", disk, "-F", "qcow2", changes],
    ["qemu-img", "commit", "-q", "-f", "qcow2", "-d", changes],
  ];
}

/** `qemu-img convert` of `from` (a stopped VM's disk, or one of its snapshots) to `to`. */
export function convertArgv(opts: {
  from: string;
  fromFormat: "qcow2" | "raw";
  to: string;
  toFormat: "qcow2" | "raw";
  /** The internal snapshot of `from` to read instead of its current state. */
  tag?: string;
}): string[] {
  return [
    "qemu-img",
    "convert",
    "-f",
    opts.fromFormat,
    ...(opts.tag ? ["-l", `snapshot.name=${opts.tag}`] : []),
    "-O",
    opts.toFormat,
    opts.from,
    opts.to,
  ];
}

/**
 * The `tar` that writes a backup staged in `stage` to `out`: sparse files kept sparse, every file
 * root's (the VM's files are the host's, whoever made them), the index first.
 */
export function backupTarArgv(stage: string, out: string, snapshots: boolean): string[] {
  return [
    "tar",
    "--sparse",
    "--numeric-owner",
    "--owner=0",
    "--group=0",
    "-czf",
    out,
    "-C",
    stage,
    VM_BACKUP.index,
    VM_BACKUP.config,
    VM_BACKUP.disk,
    ...(snapshots ? [VM_BACKUP.snapshots] : []),
  ];
}

export interface VmBackupsOptions {
  /** A VM's directory (the driver's path, linking to its pool). */
  dir: (name: string) => string;
  /** Makes a new VM's directory, on its pool when it has one. */
  makeDir: (inst: InstanceSpec) => Promise<void>;
  runner: Runner;
  status: (inst: InstanceSpec) => Promise<PowerState>;
  snapshots: QemuSnapshots;
}

export class VmBackups {
  constructor(private opts: VmBackupsOptions) {}

  #disk(name: string): string {
    return join(this.opts.dir(name), "disk.qcow2");
  }

  /** Refuses a VM that is not stopped (its QEMU holds the disk) or whose disk is missing. */
  async #stopped(inst: InstanceSpec, what: string): Promise<void> {
    const status = await this.opts.status(inst);
    if (status === "Error") {
      throw new InvalidState(`The disk of VM "${inst.name}" is missing: ${this.#disk(inst.name)}`);
    }
    if (status !== "Stopped") {
      throw new InvalidState(
        `VM "${inst.name}" is ${status.toLowerCase()}: stop it before ${what}`,
      );
    }
  }

  /** Start-up: removes the work dirs a kill left in the VM's dir; answers what it did. */
  async recoverTemp(name: string): Promise<string[]> {
    const dir = this.opts.dir(name);
    const actions: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        if (!TEMP.test(e.name)) continue;
        await Deno.remove(join(dir, e.name), { recursive: true });
        actions.push(`removed ${e.name}`);
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return actions;
  }

  async #run(argv: string[]): Promise<void> {
    await this.opts.runner.run(argv);
  }

  /** Writes a backup of a stopped VM with the snapshots named (see the module's comment). */
  async backup(
    inst: InstanceSpec,
    opts: { snapshots: string[]; index: Record<string, unknown>; out: string },
  ): Promise<void> {
    await this.#stopped(inst, "backing it up");
    const { keep } = await this.opts.snapshots.planCopy(inst.name, { snapshots: opts.snapshots });
    const dir = this.opts.dir(inst.name);
    const stage = join(dir, `.backup-${crypto.randomUUID()}`);
    const at = (member: string) => join(stage, member);
    try {
      await Deno.mkdir(at(VM_BACKUP.config), { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(at(VM_BACKUP.index), JSON.stringify(opts.index) + "\n");
      for (const f of BOOT_FILES) {
        if (existsSync(join(dir, f))) await linkOrCopy(join(dir, f), join(at(VM_BACKUP.config), f));
      }
      const disk = this.#disk(inst.name);
      await this.#run(convertArgv({
        from: disk,
        fromFormat: "qcow2",
        to: at(VM_BACKUP.disk),
        toFormat: "raw",
      }));
      for (const [snap, tag] of keep) {
        await Deno.mkdir(at(snapshotConfig(snap)), { recursive: true, mode: 0o700 });
        // Where QemuSnapshots keeps a UEFI VM's variables with its snapshot.
        const vars = join(dir, "snapshots", tag, VARS);
        if (existsSync(vars)) await linkOrCopy(vars, join(at(snapshotConfig(snap)), VARS));
        await this.#run(convertArgv({
          from: disk,
          fromFormat: "qcow2",
          tag,
          to: at(snapshotDisk(snap)),
          toFormat: "raw",
        }));
      }
      await this.#run(backupTarArgv(stage, opts.out, keep.size > 0));
    } finally {
      await Deno.remove(stage, { recursive: true }).catch(() => {});
    }
  }

  /**
   * Makes `target`'s dir from a checked backup file: a standalone qcow2 holding each snapshot named
   * (oldest first) as an internal snapshot, then the backup's current disk; the boot files and UEFI
   * variables beside it. A failure leaves nothing.
   */
  async restore(
    target: InstanceSpec,
    opts: { file: string; snapshots: string[] },
  ): Promise<VolatileChanges> {
    const dir = this.opts.dir(target.name);
    if (existsSync(dir)) {
      throw new InvalidState(`Storage for VM "${target.name}" already exists: ${dir}`);
    }
    await this.opts.makeDir(target);
    try {
      const tmp = join(dir, ".unpack");
      await Deno.mkdir(tmp, { mode: 0o700 });
      // Checked before: only files and directories, all under backup/ and where the layout puts
      // them. Owners and modes are not taken from the backup.
      const r = await this.opts.runner.run([
        "tar",
        "-xzf",
        opts.file,
        "-C",
        tmp,
        "--no-same-owner",
        "--no-same-permissions",
      ], { allowFailure: true });
      if (r.code !== 0) {
        throw new BadRequest(
          `Invalid backup: it cannot be unpacked: ${r.stderr.trim().split("\n")[0].slice(0, 300)}`,
        );
      }
      const at = (member: string) => join(tmp, member);
      const boot = await this.#restoreBoot(at(VM_BACKUP.config), dir);
      const states = [
        ...opts.snapshots.map((snap) => ({
          snap,
          image: at(snapshotDisk(snap)),
          vars: join(at(snapshotConfig(snap)), VARS),
        })),
        { snap: undefined, image: at(VM_BACKUP.disk), vars: join(at(VM_BACKUP.config), VARS) },
      ];
      const disk = this.#disk(target.name);
      let size = -1;
      for (const state of states) {
        const bytes = await rawDiskSize(state.image);
        if (size < 0) {
          await this.#run(convertArgv({
            from: state.image,
            fromFormat: "raw",
            to: disk,
            toFormat: "qcow2",
          }));
        } else {
          // Each state at its own size: qcow2 keeps a snapshot's size with it.
          if (bytes !== size) {
            await this.#run([
              "qemu-img",
              "resize",
              "-q",
              "-f",
              "qcow2",
              "--shrink",
              disk,
              `${bytes}`,
            ]);
          }
          for (const argv of writeChangesArgv(state.image, disk, join(tmp, "changes.qcow2"))) {
            await this.#run(argv);
          }
          await Deno.remove(join(tmp, "changes.qcow2"));
        }
        size = bytes;
        await Deno.remove(state.image);
        if (boot.kind === "uefi" && existsSync(state.vars)) {
          await Deno.copyFile(state.vars, join(dir, VARS));
        }
        if (state.snap) await this.opts.snapshots.create(target, state.snap);
      }
      await Deno.remove(tmp, { recursive: true });
      return {};
    } catch (err) {
      await removeInstanceDir(dir).catch(() => {});
      throw err;
    }
  }

  /**
   * Puts the backup's boot files (from its config dir `from`) in the VM's dir: a kernel boot needs
   * its kernel; a UEFI one (or a backup without `boot.json`, as Incus makes them) starts from a
   * blank variable store until a state's own is copied over it.
   */
  async #restoreBoot(from: string, dir: string): Promise<BootFile> {
    const file = join(from, BOOT_FILE);
    let boot: BootFile = { kind: "uefi" };
    const stat = await Deno.stat(file).catch(() => undefined);
    if (stat) {
      if (!stat.isFile || stat.size > MAX_BOOT_FILE_BYTES) {
        throw new BadRequest(
          `Invalid backup: ${VM_BACKUP.config}/${BOOT_FILE} is not a file of at most ${MAX_BOOT_FILE_BYTES} bytes`,
        );
      }
      let raw: unknown;
      try {
        raw = JSON.parse(await Deno.readTextFile(file));
      } catch {
        throw new BadRequest(`Invalid backup: ${VM_BACKUP.config}/${BOOT_FILE} is not JSON`);
      }
      const parsed = BootFileSchema.safeParse(raw);
      if (!parsed.success) {
        const i = parsed.error.issues[0];
        throw new BadRequest(
          `Invalid backup: ${VM_BACKUP.config}/${BOOT_FILE}: ${i.path.join(".")}: ${i.message}`,
        );
      }
      boot = parsed.data;
    }
    if (boot.kind === "kernel") {
      if (!(await Deno.stat(join(from, KERNEL)).catch(() => undefined))?.isFile) {
        throw new BadRequest(
          `Invalid backup: the VM boots a kernel, but ${VM_BACKUP.config}/${KERNEL} is missing`,
        );
      }
      await Deno.rename(join(from, KERNEL), join(dir, KERNEL));
      if ((await Deno.stat(join(from, INITRD)).catch(() => undefined))?.isFile) {
        await Deno.rename(join(from, INITRD), join(dir, INITRD));
      }
    } else {
      await Deno.copyFile(ovmfVarsTemplate("The backed-up VM"), join(dir, VARS));
    }
    await writeBootFile(dir, boot);
    return boot;
  }

  /**
   * Writes an image of a stopped VM, or of its snapshot `from`: its disk as a standalone qcow2, and
   * its kernel and initrd when it boots one.
   */
  async publish(
    inst: InstanceSpec,
    opts: { from?: string; metadata: Record<string, unknown>; out: string },
  ): Promise<void> {
    await this.#stopped(inst, "publishing it");
    const plan = await this.opts.snapshots.planCopy(inst.name, { from: opts.from, snapshots: [] });
    const dir = this.opts.dir(inst.name);
    const stage = join(dir, `.publish-${crypto.randomUUID()}`);
    await Deno.mkdir(stage, { mode: 0o700 });
    try {
      await this.#run(convertArgv({
        from: this.#disk(inst.name),
        fromFormat: "qcow2",
        tag: plan.from?.tag,
        to: join(stage, "rootfs.img"),
        toFormat: "qcow2",
      }));
      const members = ["metadata.yaml", "rootfs.img"];
      const metadata = { ...opts.metadata };
      const boot = readBootFile(dir);
      if (boot.kind === "kernel") {
        await Deno.mkdir(join(stage, "boot"));
        await linkOrCopy(join(dir, KERNEL), join(stage, "boot", KERNEL));
        const initrd = existsSync(join(dir, INITRD));
        if (initrd) await linkOrCopy(join(dir, INITRD), join(stage, "boot", INITRD));
        metadata.boot = {
          kernel: `boot/${KERNEL}`,
          ...(initrd ? { initrd: `boot/${INITRD}` } : {}),
          cmdline: boot.cmdline ?? "",
        };
        members.push("boot");
      }
      // JSON is YAML: every value is escaped for the format by construction.
      await Deno.writeTextFile(join(stage, "metadata.yaml"), JSON.stringify(metadata) + "\n");
      await this.#run([
        "tar",
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "-czf",
        opts.out,
        "-C",
        stage,
        ...members,
      ]);
    } finally {
      await Deno.remove(stage, { recursive: true }).catch(() => {});
    }
  }
}

/** The size of a raw disk image from a backup: a whole number of 512-byte sectors, not none. */
async function rawDiskSize(file: string): Promise<number> {
  const { size } = await Deno.stat(file);
  if (size === 0 || size % 512 !== 0) {
    throw new BadRequest(
      `Invalid backup: disk image ${
        file.slice(file.indexOf("backup/"))
      } is ${size} bytes, not a whole number of 512-byte sectors`,
    );
  }
  return size;
}
