/**
 * A command run to its end without websockets: its output drained, or recorded to the
 * instance's log dir (`record-output`) for `GET /1.0/instances/{name}/logs/exec_*`.
 */
import { join } from "node:path";
import type { ExecProcess } from "../drivers/driver.ts";
import { instanceLogUrl } from "../contract/urls.ts";

/** Recorded output beyond this many bytes per stream is read and dropped (the disk is shared). */
export const MAX_RECORDED_BYTES = 64 * 2 ** 20;

export type ExecResult = {
  return: number;
  /** Where the recorded stdout ("1") and stderr ("2") are served. */
  output?: Record<"1" | "2", string>;
};

/**
 * Writes a stream to a file, at most MAX_RECORDED_BYTES of it; the rest is drained so the command
 * never blocks on a full pipe. Returns when the stream ends.
 */
async function record(stream: ReadableStream<Uint8Array>, path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  let left = MAX_RECORDED_BYTES;
  try {
    for await (const chunk of stream) {
      if (left <= 0) continue;
      const part = chunk.subarray(0, left);
      for (let off = 0; off < part.length;) off += await file.write(part.subarray(off));
      left -= part.length;
    }
  } finally {
    file.close();
  }
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<void> {
  for await (const _ of stream) { /* discarded */ }
}

/**
 * Waits for a command with no input; its output is recorded under `recordIn.dir` (served as the
 * logs of instance `recordIn.name`) or, without it, drained.
 */
export async function runToEnd(
  proc: ExecProcess,
  recordIn?: { dir: string; name: string },
): Promise<ExecResult> {
  await proc.stdin.close().catch(() => {});
  if (!recordIn) {
    // Drained, not cancelled: a closed pipe would kill the command with SIGPIPE.
    await Promise.all([drain(proc.stdout), proc.stderr ? drain(proc.stderr) : undefined]);
    return { return: await proc.status };
  }
  const { dir, name } = recordIn;
  await Deno.mkdir(dir, { recursive: true });
  const id = crypto.randomUUID().slice(0, 8);
  const out = `exec_${id}.stdout`;
  const err = `exec_${id}.stderr`;
  await Promise.all([
    record(proc.stdout, join(dir, out)),
    proc.stderr
      ? record(proc.stderr, join(dir, err))
      : Deno.writeFile(join(dir, err), new Uint8Array()),
  ]);
  return {
    return: await proc.status,
    output: {
      "1": instanceLogUrl(name, out),
      "2": instanceLogUrl(name, err),
    },
  };
}
