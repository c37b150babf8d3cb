/**
 * Compatibility: the stock Incus 6.0 client (`incus`, from Debian's bookworm-backports) drives
 * outpost over its unix socket (`INCUS_DIR`). Skipped (reported as ignored) where `incus` is not
 * installed; tests/run.sh installs it. One daemon serves every test.
 */
import assert from "node:assert/strict";
import { HAS_INCUS, randomBytes, sharedDaemon, StockLxc, uniqueName } from "./helpers.ts";

/** The daemon the tests share, with the busybox image aliased "bb". */
const daemon = sharedDaemon((d) => d.importBusybox("bb"));
let client: Promise<StockLxc> | undefined;

/** The Incus client pointed at the shared daemon. */
async function incus(): Promise<StockLxc> {
  client ??= StockLxc.incus(await daemon());
  return await client;
}

/** A test of the Incus client: skipped where `incus` is not installed. */
function incusTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !HAS_INCUS, fn });
}

/** Runs `fn` with a container launched by `incus launch`, deleted afterwards. */
async function withLaunched(fn: (name: string, cli: StockLxc) => Promise<void>): Promise<void> {
  const cli = await incus();
  const name = uniqueName("i");
  try {
    await cli.ok("launch", "bb", name);
    await fn(name, cli);
  } finally {
    await cli.run(["delete", "-f", name]);
  }
}

incusTest(
  "incus launch creates and starts a container in one go, without a second start",
  () =>
    withLaunched(async (name) => {
      const d = await daemon();
      assert.equal((await d.lxcState(name)).state, "RUNNING");
    }),
);

incusTest(
  "incus list shows a launched container as RUNNING",
  () =>
    withLaunched(async (name, cli) => {
      assert.match(
        await cli.ok("list", "-c", "ns", "--format", "csv"),
        new RegExp(`^${name},RUNNING$`, "m"),
      );
    }),
);

incusTest(
  "incus exec exits with the command's exit code and passes its output",
  () =>
    withLaunched(async (name, cli) => {
      const r = await cli.run(["exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 6"]);
      assert.equal(r.code, 6);
      assert.equal(r.stdout, "out\n");
      assert.equal(r.stderr, "err\n");
    }),
);

incusTest(
  "incus info --show-log prints the container's lxc.log",
  () =>
    withLaunched(async (name, cli) => {
      const d = await daemon();
      const mark = `outpost-log-mark-${name}`;
      await Deno.writeTextFile(`${d.lxcPath}/${name}/lxc.log`, `${mark}\n`, { append: true });
      const out = await cli.ok("info", "--show-log", name);
      assert.match(out, new RegExp(mark));
    }),
);

incusTest(
  "incus file push and pull over the unix socket (SFTP) round-trip 300 KB byte-identical, running and stopped",
  () =>
    withLaunched(async (name, cli) => {
      const local = `${cli.home}/push-me`;
      const back = `${cli.home}/pulled`;
      const data = randomBytes(300_000);
      await Deno.writeFile(local, data);
      await cli.ok("file", "push", local, `${name}/root/pushed`);
      await cli.ok("file", "pull", `${name}/root/pushed`, back);
      assert.deepEqual(await Deno.readFile(back), data);
      await cli.ok("stop", "-f", name);
      await cli.ok("file", "push", local, `${name}/root/while-stopped`);
      await cli.ok("file", "pull", `${name}/root/while-stopped`, back);
      assert.deepEqual(await Deno.readFile(back), data);
    }),
);

incusTest(
  "incus file pull through a symlink or .. reaches only the container's own files, never the host's",
  () =>
    withLaunched(async (name, cli) => {
      const marker = await Deno.makeTempFile({ prefix: "outpost-host-marker-" });
      try {
        await Deno.writeTextFile(marker, "host secret\n");
        await cli.ok("exec", name, "--", "sh", "-c", "echo mine > /root/secret; ln -s / /tmp/up");
        assert.equal(
          (await cli.run(["file", "pull", `${name}/tmp/up/root/secret`, "-"])).stdout,
          "mine\n",
        );
        for (const path of [`/../../../..${marker}`, `/tmp/up/../..${marker}`]) {
          const r = await cli.run(["file", "pull", `${name}${path}`, "-"]);
          assert.notEqual(r.code, 0, path);
          assert.doesNotMatch(r.stdout, /host secret/, path);
        }
      } finally {
        await Deno.remove(marker);
      }
    }),
);
