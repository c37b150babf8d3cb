import assert from "node:assert/strict";
import { join } from "node:path";
import { Runner } from "../runner.ts";
import {
  bootSector,
  PROBE_STATUS,
  probeAccel,
  probeArgv,
  probeKey,
  probeKvm,
  resolveAccel,
  runProbe,
} from "./accel.ts";

Deno.test("the probe boot sector writes its value to the debug-exit port and is bootable", () => {
  const s = bootSector(0x1f);
  assert.equal(s.length, 512);
  assert.deepEqual([...s.subarray(0, 8)], [0xfa, 0xb0, 0x1f, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
  assert.deepEqual([s[510], s[511]], [0x55, 0xaa]);
  assert.equal(PROBE_STATUS, 63);
});

Deno.test("probeArgv() adds -cpu only when asked and escapes commas in the image path", () => {
  const argv = probeArgv("qemu-system-x86_64", "/tmp/a,b/probe.img", "kvm");
  assert.ok(!argv.includes("-cpu"));
  assert.equal(argv[argv.indexOf("-accel") + 1], "kvm");
  assert.equal(argv.at(-1), "format=raw,if=ide,file=/tmp/a,,b/probe.img");
  assert.ok(argv.includes("isa-debug-exit,iobase=0xf4,iosize=0x04"));
  const host = probeArgv("q", "/p.img", "kvm", "host");
  assert.deepEqual(host.slice(host.indexOf("-cpu"), host.indexOf("-cpu") + 2), ["-cpu", "host"]);
});

Deno.test("the probe guest runs under TCG (the positive control)", async () => {
  const r = await runProbe("tcg", { timeoutMs: 5000 });
  assert.equal(r.usable, true, r.reason);
  assert.match(r.reason, /^TCG guest ran in \d+ ms$/);
  assert.ok(r.ms < 5000);
  console.log(`TCG probe: ${r.ms} ms`);
});

Deno.test("the KVM probe answers within its timeout and explains a no", async () => {
  const timeoutMs = 3000;
  const t0 = performance.now();
  const r = await probeKvm({ timeoutMs });
  const ms = performance.now() - t0;
  assert.ok(ms < timeoutMs + 2500, `probe took ${ms} ms`);
  assert.ok(r.reason.length > 0);
  if (!r.usable) assert.match(r.reason, /^KVM /);
  console.log(`KVM probe: usable=${r.usable} in ${r.ms} ms (${r.reason})`);
});

Deno.test("-cpu host is probed too, and a QEMU abort is a reason, not a crash", async () => {
  const r = await runProbe("kvm", { cpu: "host", timeoutMs: 3000 });
  assert.ok(r.ms < 5500);
  if (!r.usable) assert.match(r.reason, /^KVM (guest did not run|probe guest failed: QEMU)/);
});

Deno.test("a missing QEMU binary is reported as unusable with the reason", async () => {
  const r = await runProbe("kvm", { qemu: "qemu-system-nonexistent" });
  assert.equal(r.usable, false);
  assert.match(r.reason, /qemu-system-nonexistent is not installed/);
  const cached = await probeAccel("kvm", {
    qemu: "qemu-system-nonexistent",
    cacheFile: "/nonexistent/never-written.json",
  });
  assert.equal(cached.usable, false);
  assert.match(cached.reason, /could not run QEMU/);
});

Deno.test("probe results are cached per QEMU version, kernel release, accelerator and CPU", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-accel-" });
  try {
    const cacheFile = join(dir, "state", "accel.json");
    await Deno.mkdir(join(dir, "state")); // the cache lives in an existing (state) directory
    const runner = new Runner();
    const seen: string[][] = [];
    runner.onRun((argv) => seen.push(argv));

    const first = await probeAccel("tcg", { cacheFile, runner, timeoutMs: 5000 });
    assert.equal(first.usable, true);
    assert.equal(first.cached, undefined);
    const key = await probeKey("tcg", { runner });
    assert.match(key, /^QEMU emulator version .* \| .+ \| tcg \| default$/);
    const stored = JSON.parse(await Deno.readTextFile(cacheFile));
    assert.equal(stored.length, 1);
    assert.equal(stored[0].key, key);

    const t0 = performance.now();
    const again = await probeAccel("tcg", { cacheFile, runner });
    assert.equal(again.cached, true);
    assert.equal(again.usable, true);
    assert.equal(again.reason, first.reason);
    assert.ok(performance.now() - t0 < 1000);
    // The key's `qemu --version` goes through the runner (the probe guest is a child of its own).
    assert.ok(seen.length > 0 && seen.every((argv) => argv[1] === "--version"));

    // Another CPU model is another key: probed and added beside the first.
    const max = await probeAccel("tcg", { cacheFile, cpu: "max", timeoutMs: 5000 });
    assert.equal(max.cached, undefined);
    assert.equal(JSON.parse(await Deno.readTextFile(cacheFile)).length, 2);

    // A different QEMU build or kernel (here: a doctored entry) is not trusted: probe again.
    const doctored = stored.map((e: { key: string }) => ({
      ...e,
      key: e.key.replace(/^[^|]+/, "QEMU emulator version 1.0.0 "),
      usable: false,
    }));
    await Deno.writeTextFile(cacheFile, JSON.stringify(doctored));
    const reprobed = await probeAccel("tcg", { cacheFile, timeoutMs: 5000 });
    assert.equal(reprobed.cached, undefined);
    assert.equal(reprobed.usable, true);
    const after = JSON.parse(await Deno.readTextFile(cacheFile));
    assert.deepEqual(after.map((e: { key: string }) => e.key), [key]);

    // A damaged cache file is ignored and rewritten.
    await Deno.writeTextFile(cacheFile, "{not json");
    assert.equal((await probeAccel("tcg", { cacheFile, timeoutMs: 5000 })).cached, undefined);
    assert.equal((await probeAccel("tcg", { cacheFile })).cached, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveAccel(): auto falls back to TCG, kvm insists, tcg is TCG", () => {
  const yes = { usable: true, reason: "KVM guest ran in 80 ms" };
  const no = { usable: false, reason: "KVM guest did not run within 3 s" };
  assert.deepEqual(resolveAccel("auto", yes), { accel: "kvm" });
  assert.deepEqual(resolveAccel("auto", no), { accel: "tcg" });
  assert.deepEqual(resolveAccel("kvm", yes), { accel: "kvm" });
  assert.deepEqual(resolveAccel("tcg", yes), { accel: "tcg" });
  assert.deepEqual(resolveAccel("tcg", no), { accel: "tcg" });
  const err = resolveAccel("kvm", no);
  assert.ok("error" in err);
  assert.match(err.error, /KVM guest did not run within 3 s/);
  assert.match(err.error, /core\.vm_accel/);
});

Deno.test("a probe whose cache directory has gone writes nothing and leaves no scratch dir", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const gone = join(dir, "removed-state");
    const result = await probeAccel("tcg", {
      cacheFile: join(gone, "kvm-probe.json"),
      workDir: gone,
      timeoutMs: 5000,
    });
    assert.equal(result.usable, false);
    assert.match(result.reason, /no scratch directory/);
    assert.equal(await Deno.stat(gone).then(() => true, () => false), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a cancelled probe kills its QEMU and reports the cancel", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 20);
    const started = performance.now();
    // KVM hangs on these machines; either way the probe must end at once when cancelled.
    const result = await probeAccel("kvm", {
      cacheFile: join(dir, "kvm-probe.json"),
      workDir: dir,
      timeoutMs: 10_000,
      signal: abort.signal,
    });
    assert.ok(performance.now() - started < 5000);
    if (!result.usable) assert.match(result.reason, /cancelled|did not run|failed/);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("outpost-accel-")),
      [],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
