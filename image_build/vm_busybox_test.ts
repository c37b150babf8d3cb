import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import {
  BUILD_SCRIPT,
  buildFailure,
  buildVmBusyboxImage,
  elfHasPvhNote,
  hasPvhEntryNote,
  VM_CMDLINE,
  VM_READY_MARKER,
  vmImageMetadata,
} from "./vm_busybox.ts";

/** The first `name` on PATH (or in the usual dirs), found when this module loads. */
function findCommand(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/bin", "/usr/sbin"];
  for (const dir of dirs.filter(Boolean)) {
    try {
      if (Deno.statSync(join(dir, name)).isFile) return join(dir, name);
    } catch { /* not here */ }
  }
  return undefined;
}

const QEMU = findCommand("qemu-system-x86_64");
/** Set it to keep the kernel package between runs (saves a ~70 MB download). */
const CACHE_DIR = Deno.env.get("OUTPOST_TEST_CACHE_DIR");
const STAGING_PREFIX = "outpost-vm-busybox-";

async function run(cmd: string, args: string[], stdin?: Uint8Array): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The build's staging dirs in `tmp` (there must be none left after a build). Each test gives the
 * build a temp dir of its own: other tests building images at the same time use the system one.
 */
async function stagingDirs(tmp: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(tmp)) {
    if (e.name.startsWith(STAGING_PREFIX) && !e.name.includes("test")) names.push(e.name);
  }
  return names.sort();
}

async function gunzip(path: string): Promise<Uint8Array> {
  const stream = (await Deno.open(path)).readable.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(2);
}

Deno.test("buildVmBusyboxImage() builds a VM image that boots under QEMU to its guest agent", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: `${STAGING_PREFIX}test-` });
  const tmpDir = join(dir, "tmp");
  await Deno.mkdir(tmpDir);
  const stagingBefore = await stagingDirs(tmpDir);
  try {
    const cacheDir = CACHE_DIR ?? join(dir, "cache");
    const outFile = join(dir, "vm.tar.gz");
    const steps: string[] = [];
    const started = performance.now();
    const built = await buildVmBusyboxImage({
      outFile,
      cacheDir,
      tmpDir,
      progress: (m) => steps.push(m),
    });
    const fetched = steps.some((s) => s.startsWith("Downloading")) ? "downloaded" : "cached";
    console.log(`    build, kernel package ${fetched}: ${seconds(started)} s`);
    assert.equal(built.file, outFile);
    assert.equal(built.os, "busybox");
    assert.equal(built.architecture, "x86_64");
    assert.match(built.release, /^\d+\.\d+/);
    assert.match(built.kernelVersion, /^\d+\.\d+\.\d+-\d+-amd64$/);
    assert.equal(
      built.description,
      `BusyBox ${built.release} VM (Debian kernel ${built.kernelVersion})`,
    );
    assert.ok(!(await exists(`${outFile}.tmp`)));
    assert.deepEqual(await stagingDirs(tmpDir), stagingBefore);

    const x = join(dir, "x");
    await Deno.mkdir(x);
    await run("tar", ["-xzf", outFile, "-C", x]);
    const kver = built.kernelVersion;

    await t.step(
      "the tarball holds metadata.yaml, rootfs.img and boot/, all owned by 0:0",
      async () => {
        const lines = (await run("tar", ["--numeric-owner", "-tzvf", outFile])).trim().split("\n");
        const names = lines.map((l) => l.split(/\s+/).slice(5).join(" "));
        assert.equal(names[0], "metadata.yaml"); // first, for importers that stream
        assert.deepEqual(
          names.toSorted(),
          ["boot/", "boot/initrd.img", "boot/vmlinux", "metadata.yaml", "rootfs.img"],
        );
        for (const line of lines) assert.match(line, /^\S+ 0\/0 /);
      },
    );

    await t.step("metadata.yaml has the image properties and outpost's boot keys", async () => {
      const meta = parse(await Deno.readTextFile(join(x, "metadata.yaml")));
      assert.equal(meta.architecture, "x86_64");
      assert.equal(typeof meta.creation_date, "number");
      assert.deepEqual(meta.properties, {
        os: "busybox",
        release: built.release,
        description: built.description,
        type: "virtual-machine",
      });
      assert.deepEqual(meta.boot, {
        kernel: "boot/vmlinux",
        initrd: "boot/initrd.img",
        cmdline: "console=ttyS0 root=/dev/vda rw quiet fastoff",
      });
    });

    await t.step("boot/vmlinux is the uncompressed ELF kernel with a PVH entry note", async () => {
      const file = await Deno.open(join(x, "boot/vmlinux"));
      const head = new Uint8Array(4);
      await file.read(head);
      file.close();
      assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46]);
      assert.equal(await hasPvhEntryNote(join(x, "boot/vmlinux")), true);
    });

    await t.step("boot/initrd.img is a gzip cpio with /init and the disk modules", async () => {
      const cpio = await gunzip(join(x, "boot/initrd.img"));
      const names = (await run("cpio", ["-t", "--quiet"], cpio)).split("\n");
      for (
        const name of [
          "init",
          "bin/busybox",
          "sbin/switch_root",
          "sbin/modprobe",
          `lib/modules/${kver}/modules.dep`,
          `lib/modules/${kver}/kernel/drivers/block/virtio_blk.ko`,
          `lib/modules/${kver}/kernel/drivers/virtio/virtio_pci.ko`,
          `lib/modules/${kver}/kernel/crypto/crc32c_generic.ko`,
          `lib/modules/${kver}/kernel/fs/ext4/ext4.ko`,
        ]
      ) assert.ok(names.includes(name), `initrd has no ${name}`);
      const init = await run("cpio", ["-i", "--quiet", "--to-stdout", "init"], cpio);
      assert.match(init, /^#!\/bin\/sh/);
      assert.match(init, /crc32c_generic/);
      assert.match(init, /exec switch_root \/newroot/);
      assert.match(init, /starting a shell on the console/);
    });

    await t.step(
      "rootfs.img is a qcow2 ext4 disk with busybox init, qemu-ga and modules",
      async () => {
        const info = JSON.parse(
          await run("qemu-img", ["info", "--output=json", join(x, "rootfs.img")]),
        );
        assert.equal(info.format, "qcow2");
        assert.ok(info["virtual-size"] >= 64 << 20 && info["virtual-size"] <= 96 << 20);
        const raw = join(dir, "rootfs.raw");
        await run("qemu-img", ["convert", "-O", "raw", join(x, "rootfs.img"), raw]);
        const debugfs = (request: string) => run("debugfs", ["-R", request, raw]);

        assert.match(await debugfs("ls -l /usr/sbin"), /\sqemu-ga\s*$/m);
        const qemuGa = await debugfs("stat /usr/sbin/qemu-ga");
        assert.match(qemuGa, /User:\s+0\s+Group:\s+0/);
        assert.match(qemuGa, /Mode:\s+0755/);
        assert.match(await debugfs("stat /sbin/init"), /Fast link dest: "\/bin\/busybox"/);
        assert.match(await debugfs("ls -l /lib64"), /ld-linux-x86-64\.so\.2/);
        assert.match(await debugfs("ls -l /lib/x86_64-linux-gnu"), /libglib-2\.0\.so\.0/);
        const deps = await debugfs(`cat /lib/modules/${kver}/modules.dep`);
        for (const m of ["virtio_net", "virtio_console", "virtio-rng", "button", "evdev", "ext4"]) {
          assert.match(deps, new RegExp(`/${m}\\.ko:`), `modules.dep has no ${m}`);
        }

        const inittab = await debugfs("cat /etc/inittab");
        assert.match(inittab, /^::sysinit:\/etc\/init\.d\/rcS$/m);
        assert.match(inittab, /^ttyS0::respawn:\/sbin\/getty -L 115200 ttyS0 vt100$/m);
        assert.match(inittab, /^::ctrlaltdel:/m);
        assert.match(inittab, /^::shutdown:/m);
        const rcS = await debugfs("cat /etc/init.d/rcS");
        assert.match(
          rcS,
          /qemu-ga -d -m virtio-serial -p \/dev\/virtio-ports\/org\.qemu\.guest_agent\.0/,
        );
        assert.match(rcS, /\/sys\/class\/virtio-ports/);
        assert.match(rcS, /udhcpc -b -i eth0/);
        assert.match(rcS, new RegExp(`echo ${VM_READY_MARKER} >/dev/ttyS0`));
        assert.match(await debugfs("cat /etc/acpi/PWRF/00000080"), /poweroff -f/);
        assert.match(await debugfs("cat /etc/shadow"), /^root::/);
        assert.match(await debugfs("stat /var/log"), /Type: directory/);
      },
    );

    await t.step("a second build reuses the cached kernel package", async () => {
      const again: string[] = [];
      const t0 = performance.now();
      const rebuilt = await buildVmBusyboxImage({
        outFile: join(dir, "again.tar.gz"),
        cacheDir,
        progress: (m) => again.push(m),
      });
      console.log(`    build, kernel package cached: ${seconds(t0)} s`);
      assert.equal(rebuilt.kernelVersion, kver);
      assert.ok(again.some((m) => /^Using the cached linux-image-/.test(m)), again.join("\n"));
      assert.ok(!again.some((m) => m.startsWith("Downloading")));
      await Deno.remove(join(dir, "again.tar.gz"));
    });

    await t.step({
      name:
        "it boots under TCG to the ready line, the guest agent, a root login and ACPI power-off",
      ignore: QEMU === undefined,
      fn: () => bootTest(QEMU!, x, join(dir, "vm"), kver),
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A unix socket peer that keeps everything it received (0xFF bytes dropped) as text. */
class Peer {
  text = "";
  /** Where until() looks from. */
  #pos = 0;
  /** Where nextLine() reads from. */
  #consumed = 0;
  #closed = false;
  #wake = () => {};
  #pump: Promise<void>;

  private constructor(private conn: Deno.UnixConn) {
    this.#pump = this.#read();
  }

  static async connect(path: string): Promise<Peer> {
    return new Peer(await Deno.connect({ transport: "unix", path }));
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(65536);
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.text += decoder.decode(buf.subarray(0, n).filter((b) => b !== 0xff), { stream: true });
        this.#wake();
      }
    } catch { /* closed */ }
    this.#closed = true;
    this.#wake();
  }

  async send(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    for (let off = 0; off < bytes.length;) off += await this.conn.write(bytes.subarray(off));
  }

  /** Waits until `test` holds for the text that came in since the last until() returned. */
  async until(test: (text: string) => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!test(this.text.slice(this.#pos))) {
      if (this.#closed) throw new Error(`Connection closed waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Timed out waiting for ${what}; got: ${this.text.slice(-400)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((res) => {
        this.#wake = res;
        timer = setTimeout(res, left);
      });
      clearTimeout(timer);
    }
    this.#pos = this.text.length;
  }

  /** Sends a JSON command and returns the first JSON reply carrying `return` or `error`. */
  async request(execute: string, args?: unknown, ms = 10_000): Promise<Record<string, unknown>> {
    await this.send(JSON.stringify({ execute, arguments: args }) + "\n");
    for (;;) {
      const reply = JSON.parse(await this.nextLine(ms));
      if (reply.error) throw new Error(`${execute}: ${JSON.stringify(reply.error)}`);
      if ("return" in reply) return reply;
    }
  }

  /** The next non-empty line (JSON protocols: QMP, the guest agent). */
  async nextLine(ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const end = this.text.indexOf("\n", this.#consumed);
      if (end >= 0) {
        const line = this.text.slice(this.#consumed, end).trim();
        this.#consumed = end + 1;
        if (line) return line;
        continue;
      }
      await this.until(
        () => this.text.indexOf("\n", this.#consumed) >= 0,
        deadline - Date.now(),
        "a reply line",
      );
    }
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch { /* already closed */ }
    await this.#pump;
  }
}

/** guest-sync-delimited until the agent answers (it may still be opening its port). */
async function qgaSync(qga: Peer): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const id = Math.floor(Math.random() * 2 ** 31);
    await qga.send(JSON.stringify({ execute: "guest-sync-delimited", arguments: { id } }) + "\n");
    try {
      for (;;) if (JSON.parse(await qga.nextLine(3000)).return === id) return;
    } catch (err) {
      if (!/Timed out/.test((err as Error).message)) throw err;
    }
  }
  throw new Error("The guest agent did not answer guest-sync-delimited within 30 s");
}

function base64Text(data: unknown): string {
  if (typeof data !== "string") return "";
  return new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
}

async function guestExec(qga: Peer, path: string, arg: string[]) {
  const started = await qga.request("guest-exec", { path, arg, "capture-output": true });
  const pid = (started.return as { pid: number }).pid;
  for (;;) {
    const status = (await qga.request("guest-exec-status", { pid })).return as Record<
      string,
      unknown
    >;
    if (status.exited) {
      return {
        code: status.exitcode as number,
        out: base64Text(status["out-data"]),
        err: base64Text(status["err-data"]),
      };
    }
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function bootTest(qemu: string, image: string, dir: string, kver: string): Promise<void> {
  await Deno.mkdir(dir);
  const overlay = join(dir, "overlay.qcow2");
  await run("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-b",
    join(image, "rootfs.img"),
    "-F",
    "qcow2",
    overlay,
  ]);
  const [qgaPath, qmpPath, consolePath, log] = [
    "qga.sock",
    "qmp.sock",
    "console.sock",
    "console.log",
  ]
    .map((f) => join(dir, f));
  // Built by hand on purpose: this checks the image, not outpost's QEMU driver.
  const args = [
    ...["-nodefaults", "-no-user-config", "-machine", "q35", "-accel", "tcg"],
    ...["-m", "256", "-smp", "1", "-display", "none", "-vga", "none"],
    ...["-kernel", join(image, "boot/vmlinux"), "-initrd", join(image, "boot/initrd.img")],
    ...["-append", VM_CMDLINE],
    ...["-drive", `file=${overlay},if=virtio,format=qcow2`],
    ...["-chardev", `socket,id=qga0,path=${qgaPath},server=on,wait=off`],
    ...["-device", "virtio-serial-pci"],
    ...["-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"],
    ...["-chardev", `socket,id=console0,path=${consolePath},server=on,wait=off,logfile=${log}`],
    ...["-serial", "chardev:console0"],
    ...["-qmp", `unix:${qmpPath},server=on,wait=off`],
    ...["-netdev", "user,id=net0,restrict=on", "-device", "virtio-net-pci,netdev=net0"],
  ];
  const started = performance.now();
  const child = new Deno.Command(qemu, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  let exited = false;
  const done = child.output().finally(() => exited = true);
  const peers: Peer[] = [];
  const connect = async (path: string) => {
    const peer = await Peer.connect(path);
    peers.push(peer);
    return peer;
  };
  const serialLog = () => Deno.readTextFile(log).catch(() => "");
  try {
    // Ready: the marker in the serial log.
    for (;;) {
      if ((await serialLog()).includes(VM_READY_MARKER)) break;
      if (exited) {
        const out = await done;
        assert.fail(`QEMU exited (${out.code}): ${new TextDecoder().decode(out.stderr)}`);
      }
      if (performance.now() - started > 60_000) {
        assert.fail(`No ${VM_READY_MARKER} within 60 s; serial log:\n${await serialLog()}`);
      }
      await new Promise((res) => setTimeout(res, 50));
    }
    console.log(`    boot to ${VM_READY_MARKER} under TCG: ${seconds(started)} s`);

    const qga = await connect(qgaPath);
    await qgaSync(qga);
    const uname = await guestExec(qga, "/bin/uname", ["-r"]);
    assert.deepEqual(uname, { code: 0, out: `${kver}\n`, err: "" });
    // udhcpc on eth0 (QEMU's user network hands out 10.0.2.15).
    for (let i = 0;; i++) {
      const addr = await guestExec(qga, "/sbin/ip", ["-4", "-o", "addr", "show", "dev", "eth0"]);
      if (addr.out.includes("10.0.2.15/24")) break;
      assert.ok(i < 100, `eth0 got no DHCP lease: ${addr.out}${addr.err}`);
      await new Promise((res) => setTimeout(res, 100));
    }

    // The serial console logs root in with no password.
    const serial = await connect(consolePath);
    await serial.send("\r");
    await serial.until((t) => t.includes("login: "), 15_000, "the login prompt");
    await serial.send("root\r");
    await serial.until((t) => t.includes("# "), 15_000, "a root shell prompt");
    await serial.send("echo LOGIN-$(whoami)-$((6 * 7))\r");
    await serial.until((t) => t.includes("LOGIN-root-42"), 15_000, "the echo from the shell");

    // ACPI power button: acpid powers off (fast with `fastoff`), QEMU exits.
    const qmp = await connect(qmpPath);
    assert.match(await qmp.nextLine(5000), /"QMP"/);
    await qmp.request("qmp_capabilities");
    const pressed = performance.now();
    await qmp.request("system_powerdown");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      done,
      new Promise<undefined>((res) => timer = setTimeout(() => res(undefined), 30_000)),
    ]);
    clearTimeout(timer);
    assert.ok(stopped, "The guest did not power off within 30 s of system_powerdown");
    console.log(`    system_powerdown to QEMU exit: ${seconds(pressed)} s`);
    assert.equal(stopped.code, 0);
    assert.match(await serialLog(), /ACPI power button, powering off/);
  } finally {
    for (const peer of peers) await peer.close();
    if (!exited) child.kill("SIGKILL");
    await done;
  }
}

Deno.test("buildVmBusyboxImage() refuses a missing kernel package and leaves no file", async () => {
  const dir = await Deno.makeTempDir({ prefix: `${STAGING_PREFIX}test-` });
  try {
    const outFile = join(dir, "vm.tar.gz");
    await assert.rejects(
      buildVmBusyboxImage({ outFile, kernelDeb: join(dir, "nope.deb") }),
      /Kernel package ".*nope\.deb" does not exist/,
    );
    assert.ok(!(await exists(outFile)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildVmBusyboxImage() names the failed step and cleans up when the package is not a kernel", async () => {
  const dir = await Deno.makeTempDir({ prefix: `${STAGING_PREFIX}test-` });
  const tmpDir = join(dir, "tmp");
  await Deno.mkdir(tmpDir);
  const before = await stagingDirs(tmpDir);
  try {
    const outFile = join(dir, "vm.tar.gz");
    const kernelDeb = join(dir, "linux-image-fake.deb");
    await Deno.writeTextFile(kernelDeb, "not a Debian package\n");
    await assert.rejects(
      buildVmBusyboxImage({ outFile, kernelDeb, tmpDir }),
      /^Error: Building the VM image failed: linux-image-fake\.deb is not a Debian package\ndpkg-deb: error: .* is not a Debian format archive$/,
    );
    assert.ok(!(await exists(outFile)));
    assert.ok(!(await exists(`${outFile}.tmp`)));
    assert.deepEqual(await stagingDirs(tmpDir), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BUILD_SCRIPT is valid bash", async () => {
  await run("bash", ["-n", "-c", BUILD_SCRIPT]);
});

Deno.test("buildFailure() leads with the script's FATAL line and keeps stderr's last lines", () => {
  const stderr = 'E: Failed to fetch x\nFATAL Downloading y: "apt-get" failed (exit 100)\n';
  assert.equal(
    buildFailure(stderr, 100),
    'Building the VM image failed: Downloading y: "apt-get" failed (exit 100)\nE: Failed to fetch x',
  );
  assert.equal(buildFailure("", 2), "Building the VM image failed: bash exited with 2");
});

Deno.test("vmImageMetadata() describes a virtual-machine image that boots its own kernel", () => {
  const meta = vmImageMetadata("1.35.0", "6.1.0-56-amd64", 1700000000);
  assert.equal(meta.properties.description, "BusyBox 1.35.0 VM (Debian kernel 6.1.0-56-amd64)");
  assert.equal(meta.properties.type, "virtual-machine");
  assert.equal(meta.boot.cmdline, VM_CMDLINE);
  assert.equal(meta.creation_date, 1700000000);
});

/** A minimal ELF64 with one PT_NOTE segment holding `notes`. */
function elfWithNotes(notes: { name: string; type: number }[], elfClass = 2): Uint8Array {
  const noteBytes: number[] = [];
  for (const { name, type } of notes) {
    const n = new TextEncoder().encode(name + "\0");
    const desc = [0x50, 0x08, 0x00, 0x01];
    const words = new Uint8Array(new Uint32Array([n.length, desc.length, type]).buffer);
    noteBytes.push(...words, ...n, ...new Array((4 - (n.length % 4)) % 4).fill(0), ...desc);
  }
  const bytes = new Uint8Array(64 + 56 + noteBytes.length);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, elfClass, 1, 1]);
  v.setBigUint64(0x20, 64n, true); // e_phoff
  v.setUint16(0x36, 56, true); // e_phentsize
  v.setUint16(0x38, 1, true); // e_phnum
  v.setUint32(64, 4, true); // PT_NOTE
  v.setBigUint64(64 + 8, 120n, true); // p_offset
  v.setBigUint64(64 + 0x20, BigInt(noteBytes.length), true); // p_filesz
  bytes.set(noteBytes, 120);
  return bytes;
}

function reader(bytes: Uint8Array) {
  return (offset: number, length: number) => Promise.resolve(bytes.slice(offset, offset + length));
}

Deno.test("elfHasPvhNote() finds the Xen PHYS32_ENTRY note and nothing else", async () => {
  const pvh = [{ name: "GNU", type: 3 }, { name: "Xen", type: 6 }, { name: "Xen", type: 18 }];
  assert.equal(await elfHasPvhNote(reader(elfWithNotes(pvh))), true);
  assert.equal(await elfHasPvhNote(reader(elfWithNotes([{ name: "Xen", type: 6 }]))), false);
  assert.equal(await elfHasPvhNote(reader(elfWithNotes([{ name: "GNU", type: 18 }]))), false);
  assert.equal(await elfHasPvhNote(reader(elfWithNotes(pvh, 1))), false); // 32-bit
  assert.equal(await elfHasPvhNote(reader(new TextEncoder().encode("MZ not an ELF"))), false);
});

Deno.test("hasPvhEntryNote() is false for a missing file and for a non-ELF file", async () => {
  assert.equal(await hasPvhEntryNote("/nonexistent/vmlinux"), false);
  assert.equal(await hasPvhEntryNote("/etc/hostname"), false);
});
