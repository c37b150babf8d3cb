/**
 * A container's block I/O from its cgroup: v1's `blkio.throttle.io_service_bytes_recursive` and
 * `io_serviced_recursive` (`MAJ:MIN Read N` lines), or v2's `io.stat` (`MAJ:MIN rbytes=N ...`);
 * devices named from `/sys/dev/block/MAJ:MIN/uevent` (`DEVNAME=vda`).
 */
import type { DiskCounters } from "../driver.ts";

const ZERO: DiskCounters = { readBytes: 0, reads: 0, writtenBytes: 0, writes: 0 };

/** v1: bytes and operations files into counters by `MAJ:MIN`. */
export function parseBlkioV1(bytes: string, ops: string): Map<string, DiskCounters> {
  const out = new Map<string, DiskCounters>();
  const take = (text: string, read: keyof DiskCounters, write: keyof DiskCounters) => {
    for (const line of text.split("\n")) {
      const [dev, kind, value] = line.trim().split(/\s+/);
      if (!/^\d+:\d+$/.test(dev ?? "") || !/^\d+$/.test(value ?? "")) continue;
      const field = kind === "Read" ? read : kind === "Write" ? write : undefined;
      if (!field) continue;
      const c = out.get(dev) ?? { ...ZERO };
      c[field] = Number(value);
      out.set(dev, c);
    }
  };
  take(bytes, "readBytes", "writtenBytes");
  take(ops, "reads", "writes");
  return out;
}

/** v2: `io.stat` into counters by `MAJ:MIN`. */
export function parseIoStat(text: string): Map<string, DiskCounters> {
  const out = new Map<string, DiskCounters>();
  for (const line of text.split("\n")) {
    const [dev, ...pairs] = line.trim().split(/\s+/);
    if (!/^\d+:\d+$/.test(dev ?? "")) continue;
    const kv = new Map(pairs.map((p) => p.split("=") as [string, string]));
    const n = (k: string) => Number(kv.get(k) ?? 0) || 0;
    out.set(dev, {
      readBytes: n("rbytes"),
      reads: n("rios"),
      writtenBytes: n("wbytes"),
      writes: n("wios"),
    });
  }
  return out;
}

/** `DEVNAME` of a `/sys/dev/block/MAJ:MIN/uevent` text. */
export function devName(uevent: string | undefined): string | undefined {
  return /^DEVNAME=([A-Za-z0-9._/-]+)$/m.exec(uevent ?? "")?.[1];
}
