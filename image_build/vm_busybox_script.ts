/** The host side of the VM test image build, as bash (embedded: the release binary has no loose files). */

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
