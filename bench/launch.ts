/**
 * Creating containers from an image of some size (the busybox image plus ~4,000 files, ~64 MiB):
 * the first create on a pool unpacks the image once, later ones clone it. Each against `tar -xf`
 * of the same image into an empty directory, which is what every create did before image volumes
 * (it then also shifted every file's ownership).
 */
import { join } from "node:path";
import { busyboxTarball, TestDaemon, uniqueName } from "../tests/helpers.ts";
import { median, ROUNDS, sh } from "./cli.ts";

const FILES = 4000;
const FILE_BYTES = 16 * 1024;

/** The busybox image with a tree of incompressible files added under /usr/share/bench. */
async function fatImage(dir: string): Promise<string> {
  const work = join(dir, "work");
  await Deno.mkdir(work);
  await sh("tar", ["-xzf", await busyboxTarball(), "-C", work]);
  const tree = join(work, "rootfs", "usr", "share", "bench");
  await Deno.mkdir(tree, { recursive: true });
  for (let i = 0; i < FILES; i++) {
    if (i % 100 === 0) await Deno.mkdir(join(tree, `d${i / 100}`));
    const data = crypto.getRandomValues(new Uint8Array(FILE_BYTES));
    await Deno.writeFile(join(tree, `d${Math.floor(i / 100)}`, `f${i}`), data);
  }
  const out = join(dir, "fat.tar.gz");
  await sh("tar", ["-czf", out, "-C", work, "metadata.yaml", "rootfs"]);
  await Deno.remove(work, { recursive: true });
  return out;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

function row(what: string, ours: number, raw: number): void {
  console.log(
    `${what.padEnd(38)} outpost ${ours.toFixed(1).padStart(8)} ms   raw ${
      raw.toFixed(1).padStart(8)
    } ms   ratio ${(ours / raw).toFixed(2)}`,
  );
}

export async function launch(): Promise<void> {
  const d = await TestDaemon.start();
  const scratch = await Deno.makeTempDir({ prefix: "outpost-bench-launch-" });
  const pool = uniqueName("bench");
  try {
    const image = await fatImage(scratch);
    await d.ok("image", "import", image, "--alias", "fat");
    await d.ok("storage", "create", pool, "btrfs", "size=4GiB");
    const raw: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const dir = join(scratch, `raw${i}`);
      await Deno.mkdir(dir);
      raw.push(await time(() => sh("tar", ["-xzf", image, "-C", dir, "--numeric-owner", "-p"])));
      await Deno.remove(dir, { recursive: true });
    }
    const rawMs = median(raw);
    const rounds = Math.max(3, Math.min(ROUNDS, 5));
    console.log(`create from a ${FILES}-file image (median of ${rounds}; raw: tar -xzf):`);
    for (const [label, on] of [["dir pool", "default"], ["btrfs pool (loop file)", pool]]) {
      const create = (name: string) =>
        d.api.run("POST", "/1.0/instances", {
          body: {
            name,
            source: { type: "image", alias: "fat" },
            devices: { root: { type: "disk", path: "/", pool: on } },
          },
        });
      const first = uniqueName("f");
      const firstMs = await time(() => create(first));
      const names: string[] = [];
      const ms: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const name = uniqueName("c");
        names.push(name);
        ms.push(await time(() => create(name)));
      }
      row(`first create, ${label} (unpacks)`, firstMs, rawMs);
      row(`create, ${label} (clone)`, median(ms), rawMs);
      for (const n of [first, ...names]) await d.api.run("DELETE", `/1.0/instances/${n}`);
    }
    await d.ok("storage", "delete", pool);
  } finally {
    await d.cleanup();
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}
