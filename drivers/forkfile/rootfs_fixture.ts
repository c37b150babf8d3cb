/**
 * A rootfs shifted into a user namespace's id map, beside a host canary, with a prepared
 * ConfinedFiles: what the tests of the confined helper (JSON and SFTP) run against. Needs root
 * (unshare --user); every temp dir is removed afterwards.
 */
import assert from "node:assert/strict";
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Runner } from "../runner.ts";
import { ConfinedFiles, type ConfinedTarget, enterStopped, type IdRange } from "./client.ts";

export const BASE = 1_300_000;
export const MAP: IdRange[] = [
  { isUid: true, isGid: false, hostId: BASE, nsId: 0, range: 65536 },
  { isUid: false, isGid: true, hostId: BASE, nsId: 0, range: 65536 },
];

export interface Fixture {
  dir: string;
  rootfs: string;
  files: ConfinedFiles;
  target: ConfinedTarget;
  /** A file outside the rootfs standing for the host's own files. */
  canary: string;
  /** Where the helper's code is (for a command that runs it directly). */
  workDir: string;
}

let prepared: Promise<ConfinedFiles> | undefined;
let workDir: string | undefined;

async function helper(): Promise<ConfinedFiles> {
  prepared ??= (async () => {
    workDir = await Deno.makeTempDir({ prefix: "outpost-helper-" });
    const files = new ConfinedFiles({ runner: new Runner(), workDir });
    const problem = await files.prepare(MAP);
    assert.equal(problem, undefined);
    return files;
  })();
  return await prepared;
}

globalThis.addEventListener("unload", () => {
  if (workDir) Deno.removeSync(workDir, { recursive: true });
});

/** A rootfs shifted into MAP (etc/passwd, root/, tmp/), beside a host canary. */
export async function withRootfs(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-confined-" });
  Deno.chmodSync(dir, 0o711);
  try {
    const rootfs = join(dir, "rootfs");
    for (const d of ["etc", "root", "tmp", "a/b"]) mkdirSync(join(rootfs, d), { recursive: true });
    writeFileSync(join(rootfs, "etc", "passwd"), "inside\n");
    const canary = join(dir, "canary");
    writeFileSync(canary, "HOST SECRET\n");
    for (const p of ["", "etc", "etc/passwd", "root", "tmp", "a", "a/b"]) {
      chownSync(join(rootfs, p), BASE, BASE);
    }
    const files = await helper();
    await fn({
      dir,
      rootfs,
      files,
      canary,
      workDir: workDir!,
      target: { enter: enterStopped(MAP), root: { kind: "dir", path: rootfs } },
    });
  } finally {
    (await helper()).close();
    await Deno.remove(dir, { recursive: true });
  }
}
