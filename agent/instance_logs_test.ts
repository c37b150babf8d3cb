/**
 * The logs verb on a temp state dir (instances from the in-memory test double): what is listed,
 * read and deleted, what is emitted, and that no file name reaches outside the instance's log dir.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BadRequest, NotFound } from "../contract/errors.ts";
import { type Core, withCore } from "../tests/core_fixture.ts";
import { runToEnd } from "./exec_output.ts";

/** Writes files into an instance's log dir. */
async function writeLogs(core: Core, name: string, files: Record<string, string>): Promise<void> {
  const dir = core.paths.instanceLogs(name);
  await Deno.mkdir(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, f), text);
}

const read = async (core: Core, name: string, file: string) =>
  await new Response((await core.instanceLogs.read(name, file)).body).text();

/** Names that try to leave the log dir or are no name the daemon writes. */
const BAD_NAMES = [
  "..",
  ".",
  "../c2/exec_1.stdout",
  "../../outpost.db",
  "..%2foutpost.db",
  "a/b",
  "/etc/passwd",
  ".hidden",
  "exec_1.stdout\0",
  "x\ny",
  "",
  "a".repeat(256),
];

Deno.test("logs list the instance's log files by name, sorted; none before the first", () =>
  withCore(async (core) => {
    await core.create("c1");
    assert.deepEqual(await core.instanceLogs.list("c1"), []);
    await writeLogs(core, "c1", { "exec_b.stdout": "", "exec_a.stderr": "", ".tmp": "" });
    await Deno.mkdir(join(core.paths.instanceLogs("c1"), "subdir"));
    assert.deepEqual(await core.instanceLogs.list("c1"), ["exec_a.stderr", "exec_b.stdout"]);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("a log is read whole and emits instance-log-retrieved with its URL", () =>
  withCore(async (core) => {
    await core.create("c1");
    await writeLogs(core, "c1", { "exec_a.stdout": "hello\n" });
    const log = await core.instanceLogs.read("c1", "exec_a.stdout");
    assert.equal(log.size, 6);
    assert.equal(await new Response(log.body).text(), "hello\n");
    assert.deepEqual(core.lifecycle, [{
      action: "instance-log-retrieved",
      source: "/1.0/instances/c1/logs/exec_a.stdout",
      context: {},
    }]);
  }));

Deno.test("a log read stops at the file's size when it was asked for", () =>
  withCore(async (core) => {
    await core.create("c1");
    await writeLogs(core, "c1", { "exec_a.stdout": "first\n" });
    const log = await core.instanceLogs.read("c1", "exec_a.stdout");
    // A recording still running appends meanwhile.
    await Deno.writeTextFile(join(core.paths.instanceLogs("c1"), "exec_a.stdout"), "more\n", {
      append: true,
    });
    assert.equal(await new Response(log.body).text(), "first\n");
  }));

Deno.test("a log is deleted and emits instance-log-deleted; a second delete is NotFound", () =>
  withCore(async (core) => {
    await core.create("c1");
    await writeLogs(core, "c1", { "exec_a.stdout": "x", "exec_a.stderr": "" });
    await core.instanceLogs.delete("c1", "exec_a.stdout");
    assert.deepEqual(await core.instanceLogs.list("c1"), ["exec_a.stderr"]);
    assert.deepEqual(core.lifecycle, [{
      action: "instance-log-deleted",
      source: "/1.0/instances/c1/logs/exec_a.stdout",
      context: {},
    }]);
    await assert.rejects(core.instanceLogs.delete("c1", "exec_a.stdout"), NotFound);
    await assert.rejects(core.instanceLogs.read("c1", "exec_a.stdout"), NotFound);
  }));

Deno.test("a directory in the log dir is neither read nor deleted", () =>
  withCore(async (core) => {
    await core.create("c1");
    const sub = join(core.paths.instanceLogs("c1"), "subdir");
    await Deno.mkdir(sub, { recursive: true });
    await assert.rejects(core.instanceLogs.read("c1", "subdir"), NotFound);
    await assert.rejects(core.instanceLogs.delete("c1", "subdir"), NotFound);
    assert.ok(existsSync(sub));
  }));

Deno.test("log names that leave the log dir are refused (400) and touch nothing", () =>
  withCore(async (core) => {
    await core.create("c1");
    await core.create("c2");
    await writeLogs(core, "c1", { "exec_1.stdout": "mine" });
    await writeLogs(core, "c2", { "exec_1.stdout": "not yours" });
    for (const bad of BAD_NAMES) {
      await assert.rejects(core.instanceLogs.read("c1", bad), BadRequest, `read ${bad}`);
      await assert.rejects(core.instanceLogs.delete("c1", bad), BadRequest, `delete ${bad}`);
    }
    assert.ok(existsSync(join(core.paths.instanceLogs("c2"), "exec_1.stdout")));
    assert.ok(existsSync(core.paths.database));
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("logs of a missing instance are NotFound, even where its log dir is left", () =>
  withCore(async (core) => {
    await writeLogs(core, "gone", { "exec_1.stdout": "old" });
    await assert.rejects(core.instanceLogs.list("gone"), NotFound);
    await assert.rejects(core.instanceLogs.read("gone", "exec_1.stdout"), NotFound);
    await assert.rejects(core.instanceLogs.delete("gone", "exec_1.stdout"), NotFound);
  }));

Deno.test("log verbs wait for the instance's lock", () =>
  withCore(async (core) => {
    await core.create("c1");
    await writeLogs(core, "c1", { "exec_a.stdout": "x" });
    let release!: () => void;
    const held = core.instances.locks.run("c1", () => new Promise<void>((r) => release = r));
    const deleted = core.instanceLogs.delete("c1", "exec_a.stdout");
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(existsSync(join(core.paths.instanceLogs("c1"), "exec_a.stdout")));
    release();
    await held;
    await deleted;
    assert.deepEqual(await core.instanceLogs.list("c1"), []);
  }));

Deno.test("a recorded exec writes where recordTarget says, and the logs serve it", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    const proc = await (await core.instances.prepareExec("c1", {
      command: ["echo", "recorded"],
      environment: {},
    }, { interactive: false }))();
    const result = await runToEnd(proc, core.instanceLogs.recordTarget("c1"));
    const files = await core.instanceLogs.list("c1");
    assert.deepEqual(
      files.map((f) => `/1.0/instances/c1/logs/${f}`).sort(),
      Object.values(result.output!).sort(),
    );
    const stdout = result.output!["1"].split("/").pop()!;
    assert.equal(await read(core, "c1", stdout), "recorded\n");
  }));

Deno.test("the runtime's own log is listed and read beside the recorded ones, and never deleted", () =>
  withCore(async (core) => {
    await core.create("c1");
    await writeLogs(core, "c1", { "exec_1.stdout": "out\n" });
    const runtimeLog = join(core.paths.root, "runtime.log");
    await Deno.writeTextFile(runtimeLog, "lxc-start: warning\n");
    core.driver.runtimeLogPath = runtimeLog;
    assert.deepEqual(await core.instanceLogs.list("c1"), ["memory.log", "exec_1.stdout"].sort());
    assert.equal(await read(core, "c1", "memory.log"), "lxc-start: warning\n");
    await assert.rejects(core.instanceLogs.delete("c1", "memory.log"), BadRequest);
    assert.ok(existsSync(runtimeLog));
    // Not there yet (an instance never started): not listed, and a read is a 404.
    await Deno.remove(runtimeLog);
    assert.deepEqual(await core.instanceLogs.list("c1"), ["exec_1.stdout"]);
    await assert.rejects(core.instanceLogs.read("c1", "memory.log"), NotFound);
  }));
