/**
 * `deno task bench`: outpost against the raw tools it drives, on this host. Prints each figure
 * next to the same work done by hand, and the ratio (outpost / raw). Containers always; VMs when
 * QEMU and the VM test image are available (`--vm`, or OUTPOST_BENCH_VM=1).
 */
import { TestDaemon, uniqueName } from "../tests/helpers.ts";

const ROUNDS = Number(Deno.env.get("OUTPOST_BENCH_ROUNDS") ?? "10");

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function sh(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

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
  } finally {
    await d.cleanup();
  }
}

await containers();
