/**
 * Is KVM usable? An openable /dev/kvm is not enough (nested guests here open it and then hang, and
 * `-cpu host` can abort), so the probe boots a tiny guest: a 512-byte boot sector that writes to
 * QEMU's `isa-debug-exit` port, which makes QEMU exit with status `(value << 1) | 1`. The
 * accelerator works iff that status comes back within the timeout. The answer can be cached in a
 * JSON file keyed by the QEMU version and the kernel release, so a daemon restart does not re-probe.
 */
import { dirname, join } from "node:path";
import { Runner } from "../runner.ts";
import type { Accel } from "./args.ts";

export type AccelMode = "auto" | "kvm" | "tcg";

export interface ProbeResult {
  usable: boolean;
  /** Why, in a sentence fit for an error message or `info` output. */
  reason: string;
  /** How long the probe took. */
  ms: number;
  /** The result came from the cache file. */
  cached?: boolean;
}

/** The name the driver uses for a KVM probe's answer. */
export type AccelProbe = ProbeResult;

export interface ProbeOptions {
  /** The QEMU binary; default `qemu-system-x86_64`. */
  qemu?: string;
  /** How long the probe guest may take; default 3000 ms. */
  timeoutMs?: number;
  /** The CPU model to probe with (`host` checks that `-cpu host` works too); default QEMU's. */
  cpu?: string;
  /** A JSON file remembering the result per QEMU version and kernel release. */
  cacheFile?: string;
  /** Runs `qemu --version` for the cache key. */
  runner?: Runner;
  /** Where the probe's scratch directory is made; default the system temp dir. */
  workDir?: string;
  /** Ends the probe early (its QEMU is killed), e.g. when the daemon shuts down. */
  signal?: AbortSignal;
}

/** The value the probe writes to the exit port, and the status QEMU exits with. */
export const PROBE_VALUE = 0x1f;
export const PROBE_STATUS = (PROBE_VALUE << 1) | 1;
const PORT = 0xf4;

/** A boot sector that writes `value` to the debug-exit port, then halts for good. */
export function bootSector(value = PROBE_VALUE): Uint8Array {
  const code = [
    0xfa, // cli
    0xb0,
    value & 0xff, // mov al, value
    0xe6,
    PORT, // out PORT, al
    0xf4, // hlt
    0xeb,
    0xfd, // jmp back to hlt
  ];
  const sector = new Uint8Array(512);
  sector.set(code);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** The argv of a probe guest booting `image` by SeaBIOS under `accel`. */
export function probeArgv(qemu: string, image: string, accel: Accel, cpu?: string): string[] {
  return [
    qemu,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-machine",
    "q35",
    "-accel",
    accel,
    ...(cpu ? ["-cpu", cpu] : []),
    "-m",
    "32",
    "-device",
    `isa-debug-exit,iobase=0x${PORT.toString(16)},iosize=0x04`,
    "-drive",
    `format=raw,if=ide,file=${image.replaceAll(",", ",,")}`,
  ];
}

const NAMES: Record<Accel, string> = { kvm: "KVM", tcg: "TCG" };

/** Boots the probe guest once under `accel` (no cache). */
export async function runProbe(
  accel: Accel,
  opts: Omit<ProbeOptions, "cacheFile" | "runner"> = {},
): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const name = NAMES[accel];
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  let dir: string;
  try {
    dir = await Deno.makeTempDir({ prefix: "outpost-accel-", dir: opts.workDir });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { usable: false, reason: `${name} probe has no scratch directory: ${why}`, ms: ms() };
  }
  try {
    const image = join(dir, "probe.img");
    await Deno.writeFile(image, bootSector());
    await Deno.truncate(image, 1 << 20); // SeaBIOS on q35 cannot read a one-sector disk
    const argv = probeArgv(opts.qemu ?? "qemu-system-x86_64", image, accel, opts.cpu);
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound ? `${argv[0]} is not installed` : String(err);
      return { usable: false, reason: `${name} probe could not start QEMU: ${why}`, ms: ms() };
    }
    const output = child.output();
    const abort = () => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited already */ }
    };
    opts.signal?.addEventListener("abort", abort, { once: true });
    if (opts.signal?.aborted) abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), timeoutMs)
    );
    const first = await Promise.race([output, timedOut]);
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", abort);
    if (opts.signal?.aborted) {
      return { usable: false, reason: `${name} probe was cancelled`, ms: ms() };
    }
    if (first === "timeout") {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited just now
      }
      // A process stuck in the kernel may not die at once: do not wait on it for ever.
      await Promise.race([output, new Promise((r) => setTimeout(r, 2000))]);
      const secs = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`;
      return { usable: false, reason: `${name} guest did not run within ${secs}`, ms: ms() };
    }
    if (first.code === PROBE_STATUS) {
      return { usable: true, reason: `${name} guest ran in ${ms()} ms`, ms: ms() };
    }
    const err = new TextDecoder().decode(first.stderr).trim().split("\n").slice(-2).join("; ");
    const how = first.signal ? `was killed by ${first.signal}` : `exited with status ${first.code}`;
    return {
      usable: false,
      reason: `${name} probe guest failed: QEMU ${how}${err ? `: ${err}` : ""}`,
      ms: ms(),
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** What a cached probe result is valid for: the QEMU build, the kernel, the accelerator and CPU. */
export async function probeKey(
  accel: Accel,
  opts: Pick<ProbeOptions, "qemu" | "cpu" | "runner"> = {},
): Promise<string> {
  const runner = opts.runner ?? new Runner();
  const r = await runner.run([opts.qemu ?? "qemu-system-x86_64", "--version"]);
  const version = r.stdout.split("\n")[0].trim();
  return [version, Deno.osRelease(), accel, opts.cpu ?? "default"].join(" | ");
}

interface CacheEntry {
  key: string;
  usable: boolean;
  reason: string;
  ms: number;
  at: string;
}

async function readCache(file: string): Promise<CacheEntry[]> {
  try {
    const v = JSON.parse(await Deno.readTextFile(file));
    return Array.isArray(v) ? v : [];
  } catch {
    return []; // missing or damaged: probe again
  }
}

/**
 * Whether `accel` works, from the cache file when it holds an answer for this QEMU version,
 * kernel release and CPU model, otherwise by booting the probe guest (and remembering the answer).
 */
export async function probeAccel(accel: Accel, opts: ProbeOptions = {}): Promise<ProbeResult> {
  if (!opts.cacheFile) return await runProbe(accel, opts);
  let key: string;
  try {
    key = await probeKey(accel, opts);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { usable: false, reason: `${NAMES[accel]} probe could not run QEMU: ${why}`, ms: 0 };
  }
  const entries = await readCache(opts.cacheFile);
  const hit = entries.find((e) => e.key === key);
  if (hit) return { usable: hit.usable, reason: hit.reason, ms: hit.ms, cached: true };
  const result = await runProbe(accel, opts);
  const entry: CacheEntry = { key, ...result, at: new Date().toISOString() };
  // Keep other accelerators' answers for the same build; drop stale builds' answers.
  const keep = entries.filter((e) =>
    e.key.split(" | ").slice(0, 2).join() === key.split(" | ").slice(0, 2).join()
  );
  // A cancelled probe proves nothing, and a cache whose directory has gone (the daemon's state
  // was removed meanwhile) is not recreated.
  if (opts.signal?.aborted) return result;
  try {
    await Deno.stat(dirname(opts.cacheFile));
  } catch {
    return result;
  }
  const tmp = `${opts.cacheFile}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify([...keep, entry], null, 2) + "\n");
  await Deno.rename(tmp, opts.cacheFile);
  return result;
}

/** Whether KVM works here (see `probeAccel`). */
export function probeKvm(opts: ProbeOptions = {}): Promise<ProbeResult> {
  return probeAccel("kvm", opts);
}

/** The accelerator for `core.vm_accel`: `auto` falls back to TCG, `kvm` insists, `tcg` is TCG. */
export function resolveAccel(
  mode: AccelMode,
  kvm: Pick<ProbeResult, "usable" | "reason">,
): { accel: Accel } | { error: string } {
  if (mode === "tcg") return { accel: "tcg" };
  if (kvm.usable) return { accel: "kvm" };
  if (mode === "auto") return { accel: "tcg" };
  return {
    error:
      `KVM is not usable here (${kvm.reason}): set core.vm_accel to auto or tcg to run VMs without it`,
  };
}
