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
import { UDHCPC_SCRIPT } from "./busybox.ts";
import { dirname, join, resolve } from "node:path";
import { stringify } from "yaml";
import { DEFAULT_BUSYBOX_PATHS, isStaticElf, parseBusyboxVersion } from "./busybox.ts";

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
export const VM_READY_MARKER = "OUTPOST-VM-READY";
/** `fastoff`: the power button powers off at once (no busybox init TERM/KILL grace sleeps). */
export const VM_CMDLINE = "console=ttyS0 root=/dev/vda rw quiet fastoff";
export const QEMU_GA = "/usr/sbin/qemu-ga";
/** Loaded by the initramfs to reach the root disk (busybox modprobe ignores softdeps: crc32c). */
export const INITRD_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];
/** Shipped on the root disk (with their dependencies) and loaded by rcS. */
export const ROOTFS_MODULES = [
  ...INITRD_MODULES,
  "virtio_net",
  "virtio_console",
  "virtio_rng",
  "button",
  "evdev",
];
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

/**
 * The host side, as one bash script run once per phase (`bash -c SCRIPT NAME PHASE`) with its
 * inputs in the environment: STAGING, BUSYBOX, QEMU_GA, KERNEL_DEB, CACHE_DIR, INITRD_MODULES,
 * ROOTFS_MODULES, OUT_TMP.
 * - `stage`: fetch (or reuse) the kernel package, extract `out/boot/vmlinux`, fill `initrd/` and
 *   `rootfs/` with busybox, the modules (depmod'd) and qemu-ga with its libraries; report the
 *   busybox applets (linked by writeGuestFiles(): one Deno.symlink is far cheaper than a fork).
 * - `pack`: `rootfs/` into an ext4 disk then `out/rootfs.img` (qcow2), `initrd/` into
 *   `out/boot/initrd.img`, and `out/` into the tarball OUT_TMP.
 */
export const BUILD_SCRIPT = `set -Eeuo pipefail
shopt -s nullglob
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STEP="Starting"
DOWNLOAD_DIR=""
trap 'rc=$?; echo "FATAL $STEP: \\"\${BASH_COMMAND%% *}\\" failed (exit $rc)" >&2; exit $rc' ERR
trap '[ -z "$DOWNLOAD_DIR" ] || rm -rf "$DOWNLOAD_DIR"' EXIT

die() { echo "FATAL $*" >&2; exit 1; }
step() { STEP=$1; echo "progress $1"; }
need() { command -v "$1" >/dev/null 2>&1 || die "No \\"$1\\" command: install the Debian package $2"; }

# The versioned package linux-image-amd64 depends on (linux-image-6.1.0-56-amd64), or "".
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null \\
    | sed -n 's/^ *Depends: <\\{0,1\\}\\(linux-image-[0-9][^ >]*\\)>\\{0,1\\}$/\\1/p' || true
}

# The newest cached deb of package $1 (any versioned amd64 kernel if $1 is empty), or "".
cached_deb() {
  local pattern="$1"
  [ -n "$pattern" ] || pattern="linux-image-[0-9]*-amd64"
  local found=( "$CACHE_DIR"/\${pattern}_*_amd64.deb )
  [ \${#found[@]} -gt 0 ] || return 0
  printf '%s\\n' "\${found[@]}" | grep -v -e '-cloud-amd64_' -e '-rt-amd64_' -e '-dbg_' \\
    | sort -V | tail -n 1 || true
}

apt_download() {
  (cd "$DOWNLOAD_DIR" && apt-get download -q "$1" >&2)
}

# Sets DEB to the kernel package to use: KERNEL_DEB, else the current Debian one from the cache or
# downloaded into it (apt-get update only when the package lists cannot provide it).
resolve_kernel_deb() {
  if [ -n "$KERNEL_DEB" ]; then DEB=$KERNEL_DEB; return; fi
  need apt-get apt
  mkdir -p "$CACHE_DIR"
  step "Resolving linux-image-amd64"
  local pkg
  pkg=$(kernel_package | head -n 1)
  if [ -z "$pkg" ]; then
    DEB=$(cached_deb "")
    if [ -n "$DEB" ]; then
      step "No package lists for linux-image-amd64: using the cached $(basename "$DEB")"
      return
    fi
    step "Updating the package lists (apt-get update)"
    apt-get update -q >&2 || die "apt-get update failed: check /etc/apt/sources.list and the network"
    pkg=$(kernel_package | head -n 1)
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64: add Debian main to /etc/apt/sources.list"
  fi
  DEB=$(cached_deb "$pkg")
  if [ -n "$DEB" ]; then
    step "Using the cached $(basename "$DEB")"
    return
  fi
  step "Downloading $pkg (apt-get download)"
  DOWNLOAD_DIR=$(mktemp -d "$CACHE_DIR/.download.XXXXXX")
  if ! apt_download "$pkg"; then
    step "Updating the package lists (apt-get update) to download $pkg"
    if ! { apt-get update -q >&2 && apt_download "$pkg"; }; then
      DEB=$(cached_deb "")
      [ -n "$DEB" ] || die "Cannot download $pkg: check /etc/apt/sources.list and the network, or pass a kernel package"
      step "Cannot download $pkg: using the cached $(basename "$DEB")"
      return
    fi
  fi
  local got=( "$DOWNLOAD_DIR"/*.deb )
  [ \${#got[@]} -eq 1 ] || die "apt-get download $pkg left \${#got[@]} packages in $DOWNLOAD_DIR"
  mv "\${got[0]}" "$CACHE_DIR/"
  DEB="$CACHE_DIR/$(basename "\${got[0]}")"
}

# Writes the ELF kernel inside bzImage $1 to $2: the xz stream that starts with FD 37 7A 58 5A 00.
extract_vmlinux() {
  local off
  for off in $(grep -obUaP '\\xFD7zXZ\\x00' "$1" | cut -d: -f1 || true); do
    tail -c "+$((off + 1))" "$1" > "$2.xz"
    if xz -dcq --single-stream "$2.xz" > "$2" 2>/dev/null \\
      && [ "$(head -c 4 "$2" | od -An -tx1 | tr -d ' \\n')" = 7f454c46 ]; then
      rm -f "$2.xz"
      return
    fi
  done
  rm -f "$2.xz" "$2"
  die "No xz-compressed ELF kernel in $(basename "$1"): cannot make an uncompressed vmlinux"
}

# copy_modules SRC KVER DEST MODULE...: the modules and their dependencies, then depmod.
copy_modules() {
  local src=$1 kver=$2 dst=$3 m deps kind file rel
  shift 3
  for m in "$@"; do
    deps=$(modprobe -d "$src" -S "$kver" --show-depends "$m" 2>/dev/null) \\
      || die "The kernel package has no module $m"
    while read -r kind file _; do
      [ "$kind" = insmod ] || continue # "builtin NAME": part of the kernel image
      rel=\${file#"$src"/}
      mkdir -p "$dst/$(dirname "$rel")"
      cp "$file" "$dst/$rel"
    done <<< "$deps"
  done
  for m in modules.order modules.builtin modules.builtin.modinfo; do
    [ ! -f "$src/lib/modules/$kver/$m" ] || cp "$src/lib/modules/$kver/$m" "$dst/lib/modules/$kver/"
  done
  depmod -b "$dst" "$kver"
}

# install_with_libs BINARY ROOT DEST: a dynamic binary plus the libraries and ld.so ldd names.
install_with_libs() {
  local lib libs
  libs=$(ldd "$1") || die "ldd cannot read $1"
  if grep -q 'not found' <<< "$libs"; then die "$1 misses libraries: $(grep 'not found' <<< "$libs" | tr -s ' \\t\\n' ' ')"; fi
  mkdir -p "$2$(dirname "$3")"
  cp "$1" "$2$3"
  for lib in $(grep -o '/[^ ]*' <<< "$libs"); do
    mkdir -p "$2$(dirname "$lib")"
    cp -L "$lib" "$2$lib"
  done
}

stage() {
  need dpkg-deb dpkg; need depmod kmod; need modprobe kmod; need xz xz-utils; need ldd libc-bin
  resolve_kernel_deb
  echo "result deb=$DEB"
  local k="$STAGING/kernel" kvers kver root
  mkdir -p "$k" "$STAGING/out/boot" "$STAGING/rootfs" "$STAGING/initrd"
  step "Unpacking $(basename "$DEB")"
  dpkg-deb --field "$DEB" Package >/dev/null || die "$(basename "$DEB") is not a Debian package"
  # Only what the modules can need: the big driver trees are left out (halves the time).
  dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$k" --wildcards \\
    --exclude='./usr/share' --exclude='./lib/modules/*/kernel/sound' \\
    --exclude='./lib/modules/*/kernel/drivers/gpu' --exclude='./lib/modules/*/kernel/drivers/media' \\
    --exclude='./lib/modules/*/kernel/drivers/net/wireless' \\
    --exclude='./lib/modules/*/kernel/drivers/net/ethernet' \\
    --exclude='./lib/modules/*/kernel/drivers/infiniband'
  if [ ! -d "$k/lib/modules" ] && [ -d "$k/usr/lib/modules" ]; then
    mkdir -p "$k/lib"
    ln -s ../usr/lib/modules "$k/lib/modules"
  fi
  kvers=( "$k"/lib/modules/*/ )
  case \${#kvers[@]} in
    1) ;;
    0) die "$(basename "$DEB") holds no kernel: pass a linux-image-<version>-amd64 package, not the linux-image-amd64 metapackage" ;;
    *) die "$(basename "$DEB") holds \${#kvers[@]} kernels (/lib/modules/*), not one" ;;
  esac
  kver=$(basename "\${kvers[0]}")
  [ -f "$k/boot/vmlinuz-$kver" ] || die "$(basename "$DEB") has no /boot/vmlinuz-$kver"
  echo "result kver=$kver"
  step "Extracting the uncompressed kernel (vmlinux)"
  extract_vmlinux "$k/boot/vmlinuz-$kver" "$STAGING/out/boot/vmlinux"
  step "Copying the kernel modules"
  [ -f "$k/lib/modules/$kver/modules.dep" ] || depmod -b "$k" "$kver"
  # shellcheck disable=SC2086 # word lists
  copy_modules "$k" "$kver" "$STAGING/initrd" $INITRD_MODULES
  # shellcheck disable=SC2086
  copy_modules "$k" "$kver" "$STAGING/rootfs" $ROOTFS_MODULES
  rm -rf "$k"
  step "Installing busybox and qemu-ga"
  for root in "$STAGING/initrd" "$STAGING/rootfs"; do
    mkdir -p "$root/bin"
    cp "$BUSYBOX" "$root/bin/busybox"
    chmod 755 "$root/bin/busybox"
  done
  install_with_libs "$QEMU_GA" "$STAGING/rootfs" /usr/sbin/qemu-ga
  local banner applets
  banner=$("$BUSYBOX" --help 2>&1 || true)
  read -r banner <<< "$banner"
  echo "result busybox=$banner"
  applets=$("$BUSYBOX" --list-full)
  echo "result applets=$(tr '\n' ' ' <<< "$applets")"
}

pack() {
  need mkfs.ext4 e2fsprogs; need qemu-img qemu-utils; need cpio cpio; need gzip gzip
  step "Making the ext4 root disk (rootfs.img)"
  local used size
  used=$(du -sm "$STAGING/rootfs" | cut -f1)
  size=64
  [ "$used" -lt 32 ] || size=$((used * 2))
  truncate -s "\${size}M" "$STAGING/rootfs.raw"
  mkfs.ext4 -q -F -m 0 -L outpost-root -d "$STAGING/rootfs" "$STAGING/rootfs.raw"
  qemu-img convert -f raw -O qcow2 "$STAGING/rootfs.raw" "$STAGING/out/rootfs.img"
  rm -f "$STAGING/rootfs.raw"
  step "Packing the initramfs (boot/initrd.img)"
  (cd "$STAGING/initrd" && find . | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n > "$STAGING/out/boot/initrd.img"
  step "Writing the image tarball"
  tar --numeric-owner --owner=0 --group=0 -I "gzip -1" -cf "$OUT_TMP" -C "$STAGING/out" metadata.yaml rootfs.img boot
}

case "\${1:-}" in
  stage) stage ;;
  pack) pack ;;
  *) die "Unknown phase \\"\${1:-}\\"" ;;
esac
`;

const DIRS: [string, number][] = [
  ["", 0o755],
  ["dev", 0o755],
  ["proc", 0o555],
  ["sys", 0o555],
  ["run", 0o755],
  ["tmp", 0o1777],
  ["root", 0o700],
  ["home", 0o755],
  ["mnt", 0o755],
  ["etc", 0o755],
  ["etc/init.d", 0o755],
  ["etc/acpi", 0o755],
  ["etc/acpi/PWRF", 0o755],
  ["etc/udhcpc", 0o755],
  ["var", 0o755],
  ["var/log", 0o755], // busybox acpid exits silently without it
];

/** The guest's own files: /etc of the root disk, /init of the initramfs. */
async function writeGuestFiles(
  rootfs: string,
  initrd: string,
  release: string,
  applets: string[],
): Promise<void> {
  for (const root of [rootfs, initrd]) await linkApplets(root, applets);
  for (const [dir, mode] of DIRS) {
    await Deno.mkdir(join(rootfs, dir), { recursive: true });
    await Deno.chmod(join(rootfs, dir), mode); // mkdir's mode is masked by the umask
  }
  await Deno.symlink("../run", join(rootfs, "var/run"));
  await Deno.symlink("/proc/self/mounts", join(rootfs, "etc/mtab"));
  for (const [path, content, mode] of rootfsFiles(release)) {
    await Deno.writeTextFile(join(rootfs, path), content);
    await Deno.chmod(join(rootfs, path), mode);
  }
  for (const dir of ["dev", "proc", "sys", "newroot"]) {
    await Deno.mkdir(join(initrd, dir), { recursive: true });
  }
  await Deno.writeTextFile(join(initrd, "init"), INITRD_INIT);
  await Deno.chmod(join(initrd, "init"), 0o755);
}

/** A `/bin/busybox` symlink for each applet path ("/sbin/getty") not already in `root`. */
async function linkApplets(root: string, applets: string[]): Promise<void> {
  for (const applet of applets) {
    const rel = applet.replace(/^\/+/, "");
    if (rel === "bin/busybox" || rel.split("/").includes("..")) continue;
    const link = join(root, rel);
    await Deno.mkdir(dirname(link), { recursive: true });
    try {
      await Deno.symlink("/bin/busybox", link);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
  }
}

/** [path relative to the root disk, content, mode]. */
function rootfsFiles(release: string): [string, string, number][] {
  return [
    ["etc/inittab", INITTAB, 0o644],
    ["etc/init.d/rcS", RCS, 0o755],
    ["etc/init.d/rcK", RCK, 0o755],
    ["etc/acpi/PWRF/00000080", POWER_BUTTON, 0o755],
    ["etc/udhcpc/default.script", UDHCPC_SCRIPT, 0o755],
    // A TEST image: root has an empty password, so the serial console logs in without one. It
    // sits in /etc/shadow: with "root::0:0" in /etc/passwd, static busybox (glibc NSS) cannot
    // map uid 0 to "root" (whoami, ps, ls -l print 0).
    ["etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644],
    ["etc/shadow", "root::19000:0:99999:7:::\n", 0o600],
    ["etc/group", "root:x:0:\ntty:x:5:\n", 0o644],
    ["etc/hostname", "busybox\n", 0o644],
    ["etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644],
    ["etc/resolv.conf", "", 0o644],
    ["etc/issue", "outpost busybox test VM (login: root, no password)\n\n", 0o644],
    ["etc/profile", PROFILE, 0o644],
    [
      "etc/os-release",
      `NAME=BusyBox\nID=busybox\nVERSION_ID=${release}\nPRETTY_NAME="BusyBox ${release} VM"\n`,
      0o644,
    ],
  ];
}

const INITRD_INIT = `#!/bin/sh
# outpost VM initramfs: load the disk drivers, mount root= (default /dev/vda) and switch_root.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

rescue() {
  echo "outpost initramfs: $*"
  echo "outpost initramfs: cannot boot the root disk, starting a shell on the console"
  exec setsid cttyhack sh
}

root=/dev/vda fstype=ext4 mode=rw init=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=*) root=\${arg#root=} ;;
    rootfstype=*) fstype=\${arg#rootfstype=} ;;
    init=*) init=\${arg#init=} ;;
    ro | rw) mode=$arg ;;
  esac
done

for m in ${INITRD_MODULES.join(" ")}; do
  modprobe "$m" || echo "outpost initramfs: cannot load module $m"
done
i=0
while [ ! -b "$root" ]; do
  i=$((i + 1))
  [ $i -le 100 ] || rescue "$root did not appear within 10 s (is the disk attached with if=virtio?)"
  sleep 0.1
done
mount -t "$fstype" -o "$mode" "$root" /newroot || rescue "cannot mount $root ($fstype, $mode)"
[ -e "/newroot$init" ] || [ -L "/newroot$init" ] || rescue "$root has no $init"
umount /sys /proc
mount --move /dev /newroot/dev
exec switch_root /newroot "$init"
`;

const INITTAB = `# busybox init for the outpost VM test image
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
`;

const RCS = `#!/bin/sh
# Start-up of the outpost VM test image; prints ${VM_READY_MARKER} on ttyS0 at the end.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
[ -r /proc/mounts ] || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock /var/log /dev/virtio-ports

[ -s /etc/hostname ] && hostname -F /etc/hostname

for m in ${ROOTFS_MODULES.join(" ")}; do
  modprobe "$m" 2>/dev/null
done

# No udev: name the virtio-serial ports as its rules would, /dev/virtio-ports/<name>. The host
# announces the ports after the driver loads, so wait a little when there is a virtio console.
if grep -qx 0x0003 /sys/bus/virtio/devices/*/device 2>/dev/null; then
  i=0
  while [ $i -lt 40 ] && ! grep -q . /sys/class/virtio-ports/*/name 2>/dev/null; do
    sleep 0.05
    i=$((i + 1))
  done
fi
for port in /sys/class/virtio-ports/*; do
  [ -r "$port/name" ] || continue
  name=$(cat "$port/name")
  [ -n "$name" ] && ln -sf "../\${port##*/}" "/dev/virtio-ports/$name"
done

# ACPI power button (outpost stop, QMP system_powerdown): /etc/acpi/PWRF/00000080
acpid

if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
  qemu-ga -d -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -t /run \\
    -f /run/qemu-ga.pid || echo "outpost: qemu-ga did not start" >/dev/ttyS0
fi

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  udhcpc -b -i eth0 -s /etc/udhcpc/default.script -p /run/udhcpc.eth0.pid \\
    >/var/log/udhcpc.log 2>&1 &
fi

echo ${VM_READY_MARKER} >/dev/ttyS0 2>/dev/null
exit 0
`;

const RCK = `#!/bin/sh
# busybox init's shutdown action: stop the daemons and leave the disk clean.
killall qemu-ga acpid udhcpc 2>/dev/null
sync
umount -a -r 2>/dev/null
exit 0
`;

const POWER_BUTTON = `#!/bin/sh
# busybox acpid runs this on an ACPI power button press.
echo "outpost: ACPI power button, powering off" >/dev/ttyS0 2>/dev/null
if grep -qw fastoff /proc/cmdline; then
  # Skip busybox init's TERM/KILL grace sleeps: fine for a test VM on a throwaway overlay.
  sync
  poweroff -f
else
  poweroff
fi
`;

const PROFILE = `export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=\${HOME:-/root}
PS1='\\h:\\w\\$ '
`;
