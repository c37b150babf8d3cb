/**
 * Builds, fully offline, an Incus "unified" container image (`.tar.gz` holding
 * `metadata.yaml` and `rootfs/`) from the host's static busybox binary.
 *
 * The root filesystem boots as an LXC system container under busybox init: it
 * mounts its tmpfs, brings up `lo`, asks DHCP for `eth0` when there is one, and
 * then just sits in init (no getty, no console shell).
 */
import { join } from "node:path";
import { stringify } from "yaml";

export interface BuildOptions {
  /** Where to write the `.tar.gz` image. */
  outFile: string;
  /** Path of the busybox binary; default: the first static one of DEFAULT_BUSYBOX_PATHS. */
  busybox?: string;
}

export interface BuiltImage {
  file: string;
  os: string;
  release: string;
  description: string;
  architecture: string;
}

export const DEFAULT_BUSYBOX_PATHS = ["/bin/busybox", "/usr/bin/busybox"];

const NO_STATIC_BUSYBOX = "No static busybox found: install busybox-static";

/** Deno's architecture names mapped to the ones Incus uses in image metadata. */
const INCUS_ARCH: Record<string, string> = {
  x86_64: "x86_64",
  aarch64: "aarch64",
};

export async function buildBusyboxImage(opts: BuildOptions): Promise<BuiltImage> {
  const busybox = await findStaticBusybox(opts.busybox);
  const release = await busyboxVersion(busybox);
  const applets = await busyboxApplets(busybox);
  const architecture = INCUS_ARCH[Deno.build.arch];
  if (!architecture) {
    throw new Error(
      `Architecture "${Deno.build.arch}" has no Incus name: build on x86_64 or aarch64`,
    );
  }
  const description = `BusyBox ${release} static`;
  const metadata = {
    architecture,
    creation_date: Math.floor(Date.now() / 1000),
    properties: { os: "busybox", release, description },
    templates: {},
  };

  const staging = await Deno.makeTempDir({ prefix: "outpost-busybox-" });
  const tmpFile = `${opts.outFile}.tmp`;
  try {
    await Deno.writeTextFile(join(staging, "metadata.yaml"), stringify(metadata));
    await writeRootfs(join(staging, "rootfs"), busybox, applets, release);
    await run("tar", [
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "-czf",
      tmpFile,
      "-C",
      staging,
      "metadata.yaml",
      "rootfs",
    ]);
    await Deno.rename(tmpFile, opts.outFile);
  } catch (err) {
    await Deno.remove(tmpFile).catch(() => {});
    throw err;
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
  return { file: opts.outFile, os: "busybox", release, description, architecture };
}

/** The given busybox if it is static, else the first static one of the default paths. */
async function findStaticBusybox(path?: string): Promise<string> {
  if (path !== undefined) {
    if (!(await isStaticElf(path))) {
      throw new Error(`${NO_STATIC_BUSYBOX} ("${path}" is not a static ELF binary)`);
    }
    return path;
  }
  // PATH order first: that is the path Deno's `--allow-run=busybox` grants.
  const onPath = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => `${d}/busybox`);
  for (const candidate of [...onPath, ...DEFAULT_BUSYBOX_PATHS]) {
    if (await isStaticElf(candidate)) return candidate;
  }
  throw new Error(NO_STATIC_BUSYBOX);
}

const PT_INTERP = 3;

/**
 * True if `path` is an ELF executable with no PT_INTERP program header, i.e. it
 * needs no dynamic loader. Missing or non-ELF files are not static.
 */
export async function isStaticElf(path: string): Promise<boolean> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch {
    return false;
  }
  if (bytes.length < 52) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== 0x7f454c46) return false; // "\x7fELF"
  const is64 = bytes[4] === 2;
  const le = bytes[5] === 1;
  if (is64 && bytes.length < 64) return false;
  const phoff = is64 ? Number(view.getBigUint64(0x20, le)) : view.getUint32(0x1c, le);
  const phentsize = view.getUint16(is64 ? 0x36 : 0x2a, le);
  const phnum = view.getUint16(is64 ? 0x38 : 0x2c, le);
  if (phnum === 0 || phoff + phnum * phentsize > bytes.length) return false;
  for (let i = 0; i < phnum; i++) {
    if (view.getUint32(phoff + i * phentsize, le) === PT_INTERP) return false;
  }
  return true;
}

/** "1.35.0" from busybox's banner "BusyBox v1.35.0 (Debian ...) multi-call binary." */
export function parseBusyboxVersion(banner: string): string {
  const match = banner.split("\n", 1)[0].match(/BusyBox v(\d+\.\d+(?:\.\d+)*)/);
  if (!match) throw new Error(`Cannot read the busybox version from "${banner.slice(0, 80)}"`);
  return match[1];
}

async function busyboxVersion(busybox: string): Promise<string> {
  return parseBusyboxVersion(await run(busybox, []));
}

/** Applet paths relative to the root ("usr/bin/env"), without busybox itself. */
async function busyboxApplets(busybox: string): Promise<string[]> {
  const out = await run(busybox, ["--list-full"]);
  const paths = out.split("\n").map((line) => line.trim().replace(/^\/+/, ""));
  return [...new Set(paths)].filter((p) => p !== "" && p !== "bin/busybox" && !p.includes(".."));
}

/** Runs a host command and returns its stdout; throws naming the command on failure. */
async function run(cmd: string, args: string[]): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .output();
  } catch (err) {
    throw new Error(`Cannot run "${cmd}": ${(err as Error).message}`);
  }
  const decoder = new TextDecoder();
  if (!output.success) {
    const stderr = decoder.decode(output.stderr).trim();
    throw new Error(`Command "${cmd} ${args.join(" ")}" failed (exit ${output.code}): ${stderr}`);
  }
  return decoder.decode(output.stdout);
}

const DIRS: [string, number][] = [
  ["bin", 0o755],
  ["sbin", 0o755],
  ["usr/bin", 0o755],
  ["usr/sbin", 0o755],
  ["dev", 0o755],
  ["proc", 0o555],
  ["sys", 0o555],
  ["tmp", 0o1777],
  ["run", 0o755],
  ["root", 0o700],
  ["home", 0o755],
  ["mnt", 0o755],
  ["etc", 0o755],
  ["etc/init.d", 0o755],
  ["etc/udhcpc", 0o755],
  ["var", 0o755],
  ["var/log", 0o755],
];

async function writeRootfs(
  rootfs: string,
  busybox: string,
  applets: string[],
  release: string,
): Promise<void> {
  for (const [dir, mode] of [["", 0o755] as [string, number], ...DIRS]) {
    const path = join(rootfs, dir);
    await Deno.mkdir(path, { recursive: true });
    await Deno.chmod(path, mode); // chmod, as mkdir's mode is masked by the umask
  }
  await Deno.symlink("../run", join(rootfs, "var/run"));
  await Deno.symlink("/proc/self/mounts", join(rootfs, "etc/mtab"));

  await Deno.copyFile(busybox, join(rootfs, "bin/busybox"));
  await Deno.chmod(join(rootfs, "bin/busybox"), 0o755);
  for (const applet of applets) {
    const link = join(rootfs, applet);
    const slash = applet.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(join(rootfs, applet.slice(0, slash)), { recursive: true });
    await Deno.symlink("/bin/busybox", link);
  }

  for (const [path, content, mode] of etcFiles(release)) {
    await Deno.writeTextFile(join(rootfs, path), content);
    await Deno.chmod(join(rootfs, path), mode);
  }
}

/** The files of /etc as [path relative to the rootfs, content, mode]. */
function etcFiles(release: string): [string, string, number][] {
  return [
    ["etc/inittab", INITTAB, 0o644],
    ["etc/init.d/rcS", RCS, 0o755],
    ["etc/udhcpc/default.script", UDHCPC_SCRIPT, 0o755],
    [
      "etc/passwd",
      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
      0o644,
    ],
    ["etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644],
    ["etc/shadow", "root:*:0:0:99999:7:::\nnobody:*:0:0:99999:7:::\n", 0o600],
    ["etc/hostname", "busybox\n", 0o644],
    ["etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644],
    ["etc/resolv.conf", "", 0o644],
    ["etc/profile", PROFILE, 0o644],
    [
      "etc/os-release",
      `NAME=BusyBox\nID=busybox\nVERSION_ID=${release}\nPRETTY_NAME="BusyBox ${release}"\n`,
      0o644,
    ],
  ];
}

const INITTAB = `# busybox init: the start-up script, then a root shell on the console once someone
# presses Enter there (outpost console, lxc console)
::sysinit:/etc/init.d/rcS
console::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
`;

const PROFILE = `export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=\${HOME:-/root}
PS1='\\h:\\w\\$ '
`;

const RCS = `#!/bin/sh
# Start-up for a busybox system container. Must be harmless with no network.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
[ -r /proc/mounts ] || mount -t proc proc /proc 2>/dev/null
mounted /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp 2>/dev/null
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run 2>/dev/null

if [ -s /etc/hostname ]; then
  hostname -F /etc/hostname 2>/dev/null
fi

mkdir -p /var/log

if command -v ip >/dev/null 2>&1; then
  ip link set lo up 2>/dev/null
else
  ifconfig lo up 2>/dev/null
fi

# DHCP only when the container has an eth0; udhcpc stays in the background to renew.
if [ -e /sys/class/net/eth0 ]; then
  udhcpc -b -i eth0 -s /etc/udhcpc/default.script -p /run/udhcpc.eth0.pid \\
    >/var/log/udhcpc.log 2>&1 &
fi

exit 0
`;

/** The udhcpc event script, shared by the container and VM images. */
export const UDHCPC_SCRIPT = `#!/bin/sh
# udhcpc event script: configures $interface from the lease udhcpc passes in the environment.
[ -n "$1" ] || { echo "Usage: $0 deconfig|bound|renew|nak|leasefail"; exit 1; }

RESOLV_CONF=/etc/resolv.conf

case "$1" in
  deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/\${mask:-24}" \${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
      while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
      for gw in $router; do
        ip -4 route add default via "$gw" dev "$interface"
        break
      done
    fi
    if [ -n "$dns" ]; then
      tmp="$RESOLV_CONF.$$"
      : > "$tmp"
      [ -n "$domain" ] && echo "search $domain" >> "$tmp"
      for ns in $dns; do
        echo "nameserver $ns" >> "$tmp"
      done
      mv "$tmp" "$RESOLV_CONF"
    fi
    ;;
  nak|leasefail)
    ;;
esac

exit 0
`;
