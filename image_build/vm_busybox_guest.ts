/**
 * The guest side of the VM test image: the files and directories of its root disk and initramfs
 * (init scripts, inittab, ACPI power button action), written by the builder into staging.
 */
import { dirname, join } from "node:path";
import { UDHCPC_SCRIPT } from "./busybox.ts";

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
export async function writeGuestFiles(
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
