/**
 * Builds, offline from Debian packages, a small VM test image: an Incus-style VM tarball holding
 * `metadata.yaml`, `rootfs.img` (a qcow2 ext4 disk with busybox, qemu-ga and virtio modules) and
 * `boot/` (the uncompressed Debian kernel and a tiny initramfs that mounts `/dev/vda`).
 *
 * The guest boots under busybox init, loads its virtio modules, starts `acpid` (ACPI power button)
 * and `qemu-ga` (virtio-serial `org.qemu.guest_agent.0`), asks DHCP on `eth0` when there is one and
 * prints `OUTPOST-VM-READY` on ttyS0. Every host command runs inside one embedded bash script (so
 * `--allow-run=bash` is enough, and a `deno compile` binary needs no loose files).
 */
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { DEFAULT_BUSYBOX_PATHS, isStaticElf, parseBusyboxVersion } from "./busybox.ts";
import {
  INITRD_MODULES,
  QEMU_GA,
  ROOTFS_MODULES,
  VM_CMDLINE,
  VM_READY_MARKER,
  writeGuestFiles,
} from "./vm_busybox_guest.ts";
import { BUILD_SCRIPT } from "./vm_busybox_script.ts";

export { BUILD_SCRIPT, INITRD_MODULES, QEMU_GA, ROOTFS_MODULES, VM_CMDLINE, VM_READY_MARKER };

export interface VmBuildOptions {
  /** Where to write the `.tar.gz` image. */
  outFile: string;
  /** A `linux-image-<version>-amd64` .deb; default: the current Debian one, via `apt-get download`. */
  kernelDeb?: string;
  /** Where downloaded kernel packages are kept and reused; default DEFAULT_CACHE_DIR. */
  cacheDir?: string;
  /** Called with a short line for each build step. */
  progress?: (msg: string) => void;
  /** Where the staging directory is made; default the system temp dir. */
  tmpDir?: string;
}

export interface BuiltVmImage {
  file: string;
  os: string;
  release: string;
  description: string;
  architecture: string;
  kernelVersion: string;
}

export const DEFAULT_CACHE_DIR = "/var/cache/outpost";
/** The line rcS prints on ttyS0 once qemu-ga and the network are started. */
/** The Debian packages the build needs on the host (scripts/host-deps.sh). */
export const VM_BUILD_APT_PACKAGES = [
  "busybox-static",
  "qemu-utils",
  "qemu-guest-agent",
  "kmod",
  "cpio",
  "e2fsprogs",
  "xz-utils",
];

const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export async function buildVmBusyboxImage(opts: VmBuildOptions): Promise<BuiltVmImage> {
  if (Deno.build.arch !== "x86_64") {
    throw new Error(`The VM test image is built for x86_64 only, not "${Deno.build.arch}"`);
  }
  const busybox = await findStaticBusybox();
  if (!(await isFile(QEMU_GA))) {
    throw new Error(`No ${QEMU_GA}: install qemu-guest-agent`);
  }
  const kernelDeb = opts.kernelDeb === undefined ? "" : resolve(opts.kernelDeb);
  if (kernelDeb && !(await isFile(kernelDeb))) {
    throw new Error(`Kernel package "${opts.kernelDeb}" does not exist`);
  }
  const outFile = resolve(opts.outFile);
  const tmpFile = `${outFile}.tmp`;
  const staging = await Deno.makeTempDir({ prefix: "outpost-vm-busybox-", dir: opts.tmpDir });
  const env = {
    STAGING: staging,
    BUSYBOX: busybox,
    QEMU_GA,
    KERNEL_DEB: kernelDeb,
    CACHE_DIR: resolve(opts.cacheDir ?? DEFAULT_CACHE_DIR),
    INITRD_MODULES: INITRD_MODULES.join(" "),
    ROOTFS_MODULES: ROOTFS_MODULES.join(" "),
    OUT_TMP: tmpFile,
  };
  try {
    const staged = await runBuildScript("stage", env, opts.progress);
    const kernelVersion = staged.kver;
    const release = parseBusyboxVersion(staged.busybox ?? "");
    const vmlinux = join(staging, "out/boot/vmlinux");
    if (!(await hasPvhEntryNote(vmlinux))) {
      throw new Error(
        `The kernel in ${staged.deb} has no PVH entry note: QEMU cannot boot its vmlinux directly`,
      );
    }
    opts.progress?.("Writing the guest configuration");
    const applets = (staged.applets ?? "").split(" ").filter(Boolean);
    await writeGuestFiles(join(staging, "rootfs"), join(staging, "initrd"), release, applets);
    const metadata = vmImageMetadata(release, kernelVersion, Math.floor(Date.now() / 1000));
    await Deno.writeTextFile(join(staging, "out/metadata.yaml"), stringify(metadata));
    await runBuildScript("pack", env, opts.progress);
    await Deno.rename(tmpFile, outFile);
    return {
      file: outFile,
      os: "busybox",
      release,
      description: metadata.properties.description,
      architecture: "x86_64",
      kernelVersion,
    };
  } catch (err) {
    await Deno.remove(tmpFile).catch(() => {});
    throw err;
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
}

/** The image's metadata.yaml content (Incus keys plus outpost's `boot`). */
export function vmImageMetadata(release: string, kernelVersion: string, creationDate: number) {
  return {
    architecture: "x86_64",
    creation_date: creationDate,
    properties: {
      os: "busybox",
      release,
      description: `BusyBox ${release} VM (Debian kernel ${kernelVersion})`,
      type: "virtual-machine",
    },
    boot: { kernel: "boot/vmlinux", initrd: "boot/initrd.img", cmdline: VM_CMDLINE },
    templates: {},
  };
}

async function findStaticBusybox(): Promise<string> {
  for (const candidate of DEFAULT_BUSYBOX_PATHS) {
    if (await isStaticElf(candidate)) return candidate;
  }
  throw new Error("No static busybox found: install busybox-static");
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Runs one phase of BUILD_SCRIPT. Its stdout lines `progress <msg>` go to `progress`, and
 * `result <key>=<value>` lines are returned; on failure the error names the failed step.
 */
async function runBuildScript(
  phase: "stage" | "pack",
  env: Record<string, string>,
  progress?: (msg: string) => void,
): Promise<Record<string, string>> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("bash", {
      args: ["-c", BUILD_SCRIPT, "outpost-vm-build", phase],
      env: { ...env, LC_ALL: "C", DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    throw new Error(`Cannot run "bash" to build the VM image: ${(err as Error).message}`);
  }
  const results: Record<string, string> = {};
  const readStdout = async () => {
    let pending = "";
    const onLine = (line: string) => {
      if (line.startsWith("progress ")) progress?.(line.slice("progress ".length));
      const result = line.match(/^result ([a-z]+)=(.*)$/);
      if (result) results[result[1]] = result[2];
    };
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      lines.forEach(onLine);
    }
    if (pending) onLine(pending);
  };
  const [status, , stderr] = await Promise.all([
    child.status,
    readStdout(),
    new Response(child.stderr).text(),
  ]);
  if (!status.success) throw new Error(buildFailure(stderr, status.code));
  return results;
}

/** "Building the VM image failed: <the script's FATAL line>" plus the last lines of stderr. */
export function buildFailure(stderr: string, code: number): string {
  const lines = stderr.split("\n").map((l) => l.trimEnd()).filter(Boolean);
  const fatal = lines.filter((l) => l.startsWith("FATAL ")).pop()?.slice("FATAL ".length);
  const context = lines.filter((l) => !l.startsWith("FATAL ")).slice(-12).join("\n");
  const head = `Building the VM image failed: ${fatal ?? `bash exited with ${code}`}`;
  return context ? `${head}\n${context}` : head;
}

/**
 * True if `path` is a 64-bit little-endian ELF whose PT_NOTE segments carry the Xen
 * PHYS32_ENTRY note: the PVH entry point QEMU's `-kernel` needs to boot an ELF vmlinux.
 */
export async function hasPvhEntryNote(path: string): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch {
    return false;
  }
  try {
    return await elfHasPvhNote(async (offset, length) => {
      await file.seek(offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const n = await file.read(buf.subarray(got));
        if (n === null) break;
        got += n;
      }
      return buf.subarray(0, got);
    });
  } finally {
    file.close();
  }
}

/** The ELF walk of hasPvhEntryNote() over a reader, so tests can hand it bytes. */
export async function elfHasPvhNote(
  readAt: (offset: number, length: number) => Promise<Uint8Array>,
): Promise<boolean> {
  const header = await readAt(0, 64);
  if (header.length < 64) return false;
  const h = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (h.getUint32(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) return false;
  const phoff = Number(h.getBigUint64(0x20, true));
  const phentsize = h.getUint16(0x36, true);
  const phnum = h.getUint16(0x38, true);
  if (phentsize < 56 || phnum === 0) return false;
  const table = await readAt(phoff, phnum * phentsize);
  if (table.length < phnum * phentsize) return false;
  const ph = new DataView(table.buffer, table.byteOffset, table.byteLength);
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    if (ph.getUint32(at, true) !== 4) continue; // PT_NOTE
    const size = Math.min(Number(ph.getBigUint64(at + 0x20, true)), 1 << 20);
    const notes = await readAt(Number(ph.getBigUint64(at + 8, true)), size);
    const n = new DataView(notes.buffer, notes.byteOffset, notes.byteLength);
    for (let off = 0; off + 12 <= notes.length;) {
      const namesz = n.getUint32(off, true);
      const descsz = n.getUint32(off + 4, true);
      const type = n.getUint32(off + 8, true);
      const name = new TextDecoder().decode(notes.subarray(off + 12, off + 12 + namesz));
      if (name === "Xen\0" && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
      off += 12 + align4(namesz) + align4(descsz);
    }
  }
  return false;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
