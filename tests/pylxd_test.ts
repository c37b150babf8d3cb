/**
 * Compatibility: pylxd 2.2 (Debian's python3-pylxd, a real LXD client nobody here wrote) drives
 * outpost over its unix socket through LXD's legacy /1.0/containers paths: create from an image
 * alias, start, execute() (which never opens the exec `control` websocket), lifecycle events,
 * stop, delete. Skipped (reported as ignored) where pylxd is not installed; tests/run.sh installs
 * it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, TestDaemon, uniqueName } from "./helpers.ts";

/** Debian's python3 (a python3 earlier on PATH, such as pyenv's, may not see Debian's packages). */
const PYTHON = (await Deno.stat("/usr/bin/python3").then(() => true, () => false))
  ? "/usr/bin/python3"
  : "python3";

const HAS_PYLXD = await new Deno.Command(PYTHON, {
  args: ["-c", "import pylxd, ws4py"],
  stdout: "null",
  stderr: "null",
}).output().then((o) => o.success, () => false);

interface Step {
  step: string;
  [k: string]: unknown;
}

/** Runs the pylxd script; `next()` returns its next step, after which it waits for `go()`. */
function pylxd(...args: string[]) {
  const child = new Deno.Command(PYTHON, {
    args: [join(ROOT, "tests/clients/pylxd_flow.py"), ...args],
    env: { PYTHONWARNINGS: "ignore", PYLXD_WARNINGS: "none" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  const stdin = child.stdin.getWriter();
  let buffered = "";
  return {
    async next(): Promise<Step> {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) {
          const { code } = await child.status;
          throw new Error(`pylxd exited ${code} before a step:\n${buffered}${await stderr}`);
        }
        buffered += value;
      }
      const line = buffered.slice(0, buffered.indexOf("\n"));
      buffered = buffered.slice(line.length + 1);
      return JSON.parse(line);
    },
    go: () => stdin.write(new TextEncoder().encode("\n")),
    async end(): Promise<string> {
      await stdin.close().catch(() => {});
      const { code } = await child.status;
      await lines.cancel().catch(() => {});
      const err = await stderr;
      assert.equal(code, 0, err);
      return err;
    },
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    },
  };
}

Deno.test({
  name:
    "pylxd: create from an alias, start, execute() without a control socket, events, stop, delete",
  ignore: !HAS_PYLXD,
  async fn() {
    const d = await TestDaemon.start();
    const name = uniqueName("py");
    await d.importBusybox("bb").catch(async (err) => {
      await d.cleanup();
      throw err;
    });
    const py = pylxd(d.socket, "bb", name);
    try {
      const status = async () =>
        (await d.api.get<{ status: string }>(`/1.0/instances/${name}`)).status;

      const created = await py.next();
      assert.equal(created.step, "created");
      assert.equal(created.status, "Stopped");
      assert.deepEqual(created.listed, [name]);
      assert.equal(await status(), "Stopped");
      await py.go();

      const started = await py.next();
      assert.deepEqual([started.step, started.status], ["started", "Running"]);
      assert.equal(await status(), "Running");
      assert.equal((await d.lxcState(name)).state, "RUNNING");
      await py.go();

      // pylxd connects fds 0, 1 and 2 only: the command runs at once, not after 10 s.
      const executed = await py.next();
      assert.deepEqual(executed, { step: "executed", exit_code: 0, stdout: "hi\n", stderr: "" });
      await py.go();

      const stopped = await py.next();
      assert.deepEqual([stopped.step, stopped.status], ["stopped", "Stopped"]);
      assert.equal((await d.lxcState(name)).state, "STOPPED");
      await py.go();

      const deleted = await py.next();
      assert.equal(deleted.step, "deleted");
      assert.equal(deleted.exists, false);
      assert.deepEqual(await d.api.get("/1.0/instances"), []);
      const events = deleted.events as string[];
      for (
        const action of [
          "instance-created",
          "instance-started",
          "instance-exec",
          "instance-stopped",
          "instance-deleted",
        ]
      ) {
        assert.ok(events.includes(action), `${action} in ${events.join(", ")}`);
      }
      await py.go();
      await py.end();
    } catch (err) {
      py.kill();
      throw new Error(`${err}\n--- daemon log:\n${(await d.log()).slice(-4000)}`);
    } finally {
      await d.cleanup();
    }
  },
});
