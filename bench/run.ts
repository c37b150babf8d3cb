/**
 * `deno task bench`: outpost against the raw tools it drives, on this host. Prints each figure
 * next to the same work done by hand, and the ratio (outpost / raw); then the daemon's memory
 * (idle, with 50 running containers, after deleting them) against its targets; then a host's API
 * through a hub's tunnel against the host's own socket. Containers always;
 * VMs when QEMU and the VM test image are available (`--vm`, or OUTPOST_BENCH_VM=1).
 */
import { join } from "node:path";
import { TestDaemon, uniqueName } from "../tests/helpers.ts";
import { cliRows, listRows, median, ROUNDS, sh as run } from "./cli.ts";
import { fleet } from "./fleet.ts";
import { launch } from "./launch.ts";

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

const sh = (cmd: string, ...args: string[]) => run(cmd, args);

function row(what: string, ours: number, raw: number): void {
  console.log(
    `${what.padEnd(38)} outpost ${ours.toFixed(1).padStart(8)} ms   raw ${
      raw.toFixed(1).padStart(8)
    } ms   ratio ${(ours / raw).toFixed(2)}`,
  );
}

async function containers(): Promise<void> {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const name = uniqueName("b");
    await d.ok("init", "busybox", name);
    const path = `/1.0/instances/${name}`;
    // Raw: a second copy of the same container config and rootfs, driven by lxc-* directly.
    const raw = uniqueName("r");
    await d.ok("init", "busybox", raw);

    const start: number[] = [];
    const rawStart: number[] = [];
    const exec: number[] = [];
    const rawExec: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      start.push(
        await time(() => d.api.run("PUT", `${path}/state`, { body: { action: "start" } })),
      );
      rawStart.push(await time(() => sh("lxc-start", "-P", d.lxcPath, "-n", raw)));
      exec.push(
        await time(() =>
          d.api.run("POST", `${path}/exec`, { body: { command: ["true"], "record-output": false } })
        ),
      );
      rawExec.push(
        await time(() => sh("lxc-attach", "-P", d.lxcPath, "-n", raw, "--clear-env", "--", "true")),
      );
      await d.api.run("PUT", `${path}/state`, { body: { action: "stop", force: true } });
      await sh("lxc-stop", "-P", d.lxcPath, "-n", raw, "-k");
    }
    console.log(`containers (median of ${ROUNDS}):`);
    row("start (API, until running)", median(start), median(rawStart));
    row("exec `true` (API, until exit code)", median(exec), median(rawExec));
    const listT: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      listT.push(await time(() => d.api.get("/1.0/instances?recursion=2")));
    }
    const infoT: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      infoT.push(await time(() => sh("lxc-info", "-P", d.lxcPath, "-n", raw)));
    }
    row("list recursion=2 vs lxc-info", median(listT), median(infoT));
    await d.api.run("PUT", `${path}/state`, { body: { action: "start" } });
    console.log("command line and exec (median of rounds, same daemon):");
    await cliRows(d, name);
  } finally {
    await d.cleanup();
  }
}

if (!Deno.args.includes("--vm-only")) await containers();
if (!Deno.args.includes("--vm-only")) await launch();

const MiB = 2 ** 20;
const RUNNING = Number(Deno.env.get("OUTPOST_BENCH_RUNNING") ?? "50");

/** The daemon's resident memory (VmRSS), in bytes. */
async function daemonRss(d: TestDaemon): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${d.proc!.pid}/status`);
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)![1]) * 1024;
}

/** RSS once the daemon has been left alone (finished operations age out after 5 s). */
async function settledRss(d: TestDaemon): Promise<number> {
  await new Promise((r) => setTimeout(r, 6_000));
  return await daemonRss(d);
}

function memRow(what: string, value: string, target: string, met: boolean): void {
  console.log(
    `${what.padEnd(38)} outpost ${value.padStart(18)}   target ${target.padEnd(14)} ${
      met ? "met" : "NOT met"
    }`,
  );
}

/** Runs `fn` over `items`, `width` at a time. */
async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

/** The daemon's memory: idle, with RUNNING containers running, and after they are deleted. */
async function memory(): Promise<void> {
  const d = await TestDaemon.start();
  try {
    await d.importBusybox();
    const idle = await settledRss(d);
    const names = Array.from({ length: RUNNING }, () => uniqueName("m"));
    await pool(names, 5, (name) =>
      d.api.run("POST", "/1.0/instances", {
        body: { name, source: { type: "image", alias: "busybox" }, start: true },
      }));
    await d.api.get("/1.0/instances?recursion=2");
    const running = await settledRss(d);
    console.log(`listing with ${RUNNING} running:`);
    await listRows(d, RUNNING);
    await pool(names, 5, async (name) => {
      await d.api.run("PUT", `/1.0/instances/${name}/state`, {
        body: { action: "stop", force: true },
      });
      await d.api.run("DELETE", `/1.0/instances/${name}`);
    });
    const deleted = await settledRss(d);
    const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
    console.log("daemon memory (VmRSS):");
    memRow("idle (image imported)", mib(idle), "<= 60 MiB", idle <= 60 * MiB);
    memRow(`${RUNNING} containers running`, mib(running), "<= 80 MiB", running <= 80 * MiB);
    memRow(
      "after deleting them",
      `${mib(deleted)} (${(deleted / idle).toFixed(2)}x)`,
      "<= 1.2x idle",
      deleted <= 1.2 * idle,
    );
  } finally {
    await d.cleanup();
  }
}

if (!Deno.args.includes("--vm-only")) await memory();

/**
 * VM launch → guest agent ready, through outpost (API create + start, then the first exec that
 * answers) and by hand (the same QEMU argv on a fresh overlay, then the guest agent's first sync).
 */
async function vms(): Promise<void> {
  const { vmTarball } = await import("../tests/helpers.ts");
  const { QgaClient } = await import("../drivers/qemu/qga.ts");
  const d = await TestDaemon.start();
  try {
    await d.ok("config", "set", "core.vm_accel=tcg");
    await d.ok("image", "import", await vmTarball(), "--alias", "vm");
    const rounds = Math.max(1, Math.min(ROUNDS, 3));
    const ours: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const name = uniqueName("bv");
      ours.push(
        await time(async () => {
          await d.ok("launch", "vm", name, "--vm", "-c", "limits.memory=256MiB");
          while ((await d.cli("exec", name, "--", "true")).code !== 0) {
            await new Promise((r) => setTimeout(r, 100));
          }
        }),
      );
      // The same QEMU command line, by hand: read it from the running VM, then stop that VM.
      const [vm] = JSON.parse(await d.ok("list", "--format", "json"));
      const argv = (await Deno.readTextFile(`/proc/${vm.state.pid}/cmdline`)).split("\0").filter(
        Boolean,
      );
      await d.ok("delete", "--force", name);
      const scratch = await Deno.makeTempDir({ prefix: "outpost-bench-vm-" });
      try {
        const vmDir = join(d.dir, "virtual-machines", name);
        const image = [...Deno.readDirSync(join(d.dir, "images"))].find((e) =>
          e.name.endsWith(".d")
        )!;
        const imageDir = join(d.dir, "images", image.name);
        await sh(
          "qemu-img",
          "create",
          "-q",
          "-f",
          "qcow2",
          "-b",
          join(imageDir, "rootfs.img"),
          "-F",
          "qcow2",
          join(scratch, "disk.qcow2"),
        );
        const handArgv = argv.map((a) => a.replaceAll(vmDir, scratch))
          .map((a) => a.replace(join(scratch, "kernel"), join(imageDir, "boot", "vmlinux")))
          .map((a) => a.replace(join(scratch, "initrd"), join(imageDir, "boot", "initrd.img")));
        raw.push(
          await time(async () => {
            await sh(handArgv[0], ...handArgv.slice(1));
            const qga = new QgaClient(join(scratch, "qga.sock"));
            await qga.waitReady(120_000);
            qga.close();
          }),
        );
        const pid = Number((await Deno.readTextFile(join(scratch, "qemu.pid"))).trim());
        await sh("kill", "-9", String(pid));
      } finally {
        await Deno.remove(scratch, { recursive: true }).catch(() => {});
      }
    }
    console.log(`virtual machines under TCG (median of ${rounds}):`);
    row("launch → guest agent ready", median(ours), median(raw));
  } finally {
    await d.cleanup();
  }
}

if (!Deno.args.includes("--vm-only")) await fleet();
if (Deno.args.includes("--vm") || Deno.env.get("OUTPOST_BENCH_VM") === "1") await vms();
