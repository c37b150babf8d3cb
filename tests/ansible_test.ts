/**
 * Compatibility: Ansible's community.general.lxd_container module (Debian's ansible 7, a real LXD
 * client nobody here wrote) drives outpost over its unix socket through LXD's legacy
 * /1.0/containers paths: every state it knows, each change reported as changed and a repeat as ok,
 * and the daemon's own view checked after each. Skipped (reported as ignored) where
 * ansible-playbook is not installed; tests/run.sh installs it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, TestDaemon, uniqueName } from "./helpers.ts";

const HAS_ANSIBLE = await new Deno.Command("sh", {
  args: ["-c", "command -v ansible-playbook"],
  stdout: "null",
}).output().then((o) => o.success, () => false);

interface TaskResult {
  changed: boolean;
  failed?: boolean;
  msg?: string;
  actions: string[];
  old_state: string;
}

/** Runs the playbook for one state; the module's result for the host. */
async function playbook(
  d: TestDaemon,
  home: string,
  vars: { name: string; state: string; config?: Record<string, string> },
): Promise<TaskResult> {
  const extra = {
    url: `unix:${d.socket}`,
    alias: "bb",
    ansible_python_interpreter: "/usr/bin/python3",
    ...vars,
    config: vars.config ?? {},
  };
  const out = await new Deno.Command("ansible-playbook", {
    args: [
      "-i",
      "localhost,",
      "-e",
      JSON.stringify(extra),
      join(ROOT, "tests/clients/lxd_container.yml"),
    ],
    env: {
      HOME: home,
      ANSIBLE_STDOUT_CALLBACK: "ansible.posix.json",
      ANSIBLE_LOCALHOST_WARNING: "false",
      ANSIBLE_NOCOLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  let report;
  try {
    report = JSON.parse(text.slice(text.indexOf("{")));
  } catch {
    throw new Error(
      `ansible-playbook printed no report (exit ${out.code}):\n${text}\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  const result = report.plays[0].tasks[0].hosts.localhost as TaskResult;
  assert.ok(!result.failed, `state ${vars.state} failed: ${result.msg}`);
  assert.equal(out.code, 0, text);
  return result;
}

Deno.test({
  name:
    "ansible lxd_container: started, restarted, frozen, a config change, stopped and absent; a repeat is ok",
  ignore: !HAS_ANSIBLE,
  async fn() {
    const d = await TestDaemon.start();
    try {
      await d.importBusybox("bb");
      const home = await Deno.makeTempDir({ prefix: "outpost-ansible-home-", dir: d.dir });
      const name = uniqueName("an");
      const run = (state: string, config?: Record<string, string>) =>
        playbook(d, home, { name, state, config });
      const instance = () =>
        d.api.get<{ status: string; config: Record<string, string> }>(`/1.0/instances/${name}`);

      let r = await run("started");
      assert.deepEqual([r.changed, r.old_state, r.actions], [true, "absent", ["create", "start"]]);
      assert.equal((await instance()).status, "Running");
      assert.equal((await d.lxcState(name)).state, "RUNNING");
      r = await run("started");
      assert.deepEqual([r.changed, r.actions], [false, []]);

      const pid = (await d.lxcState(name)).pid;
      r = await run("restarted");
      assert.deepEqual([r.changed, r.actions], [true, ["restart"]]);
      assert.equal((await instance()).status, "Running");
      assert.notEqual((await d.lxcState(name)).pid, pid);

      r = await run("frozen");
      assert.deepEqual([r.changed, r.actions], [true, ["freeze"]]);
      assert.equal((await instance()).status, "Frozen");
      assert.equal((await d.lxcState(name)).state, "FROZEN");
      // No repeat here: the module freezes a frozen instance again, which LXD 5.0 refuses too.

      // From frozen to started with a new key: resumed, then the config is PUT back whole.
      r = await run("started", { "user.x": "y" });
      assert.deepEqual([r.changed, r.actions], [true, ["unfreeze", "apply_instance_configs"]]);
      const updated = await instance();
      assert.equal(updated.status, "Running");
      assert.equal(updated.config["user.x"], "y");
      r = await run("started", { "user.x": "y" });
      assert.deepEqual([r.changed, r.actions], [false, []]);

      r = await run("stopped");
      assert.deepEqual([r.changed, r.actions], [true, ["stop"]]);
      assert.equal((await instance()).status, "Stopped");
      assert.equal((await d.lxcState(name)).state, "STOPPED");
      r = await run("stopped");
      assert.deepEqual([r.changed, r.actions], [false, []]);

      r = await run("absent");
      assert.deepEqual([r.changed, r.actions], [true, ["delete"]]);
      assert.deepEqual(await d.api.get("/1.0/instances"), []);
      r = await run("absent");
      assert.deepEqual([r.changed, r.old_state, r.actions], [false, "absent", []]);
    } catch (err) {
      throw new Error(`${err}\n--- daemon log:\n${(await d.log()).slice(-4000)}`);
    } finally {
      await d.cleanup();
    }
  },
});
