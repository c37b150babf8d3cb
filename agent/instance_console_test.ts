/**
 * The console verb against the in-memory test double: what is refused, when the instance's lock is
 * held, what reaches the driver and what is emitted.
 */
import assert from "node:assert/strict";
import { BadRequest, InvalidState, NotFound } from "../contract/errors.ts";
import { withCore } from "../tests/core_fixture.ts";
import type { ConsoleRequest } from "./instance_console.ts";

const CONSOLE: ConsoleRequest = { type: "console", width: 80, height: 24 };

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => open = r);
  return { opened, open };
}

Deno.test("console of a stopped instance is InvalidState and reaches no driver", () =>
  withCore(async (core) => {
    await core.create("c1");
    await assert.rejects(core.consoles.prepare("c1", CONSOLE), InvalidState);
    assert.deepEqual(core.driver.called("console"), []);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("console of a frozen instance is InvalidState naming the fix", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    core.driver.setPower("c1", "Frozen");
    await assert.rejects(core.consoles.prepare("c1", CONSOLE), /is frozen: resume it first/);
    assert.deepEqual(core.driver.called("console"), []);
  }));

Deno.test("console of a missing instance is NotFound; a VGA console is a BadRequest", () =>
  withCore(async (core) => {
    await assert.rejects(core.consoles.prepare("nope", CONSOLE), NotFound);
    await core.createRunning("c1");
    await assert.rejects(core.consoles.prepare("c1", { ...CONSOLE, type: "vga" }), BadRequest);
  }));

Deno.test("console attaches with the size asked for and emits instance-console", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    const attach = await core.consoles.prepare("c1", CONSOLE);
    assert.deepEqual(core.lifecycle, [], "nothing is announced before the attach");
    const proc = await attach();
    assert.deepEqual(core.driver.called("console").map((c) => c.args), [[{
      width: 80,
      height: 24,
    }]]);
    assert.deepEqual(core.lifecycle, [
      { action: "instance-console", source: "/1.0/instances/c1", context: { type: "console" } },
    ]);
    // The session is the driver's process: what is typed comes back.
    const w = proc.stdin.getWriter();
    await w.write(new TextEncoder().encode("hi"));
    await w.close();
    assert.equal(await new Response(proc.stdout).text(), "hi");
    assert.equal(await proc.status, 0);
  }));

Deno.test("console attach waits for the instance's lock and checks again under it", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    const attach = await core.consoles.prepare("c1", CONSOLE);
    const held = gate();
    // A stop holds the lock when the client's websockets connect.
    const stop = core.instances.locks.run("c1", async () => {
      await held.opened;
      await core.driver.stop(core.instances.get("c1"), { force: true, timeout: 0 });
    });
    const attached = attach();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(core.driver.called("console"), [], "no attach while the lock is held");
    held.open();
    await stop;
    await assert.rejects(attached, /"c1" is not running/);
    assert.deepEqual(core.driver.called("console"), []);
    assert.deepEqual(core.lifecycle, []);
  }));

Deno.test("a console session does not hold the instance's lock", () =>
  withCore(async (core) => {
    await core.createRunning("c1");
    const proc = await (await core.consoles.prepare("c1", CONSOLE))();
    assert.equal(core.instances.locks.busy("c1"), false);
    // A stop goes through while the session is open.
    await (await core.instances.prepareState("c1", { action: "stop", force: true, timeout: 0 }))();
    assert.equal(core.driver.storage.get("c1")?.power, "Stopped");
    await proc.stdin.close();
    assert.equal(await proc.status, 0);
  }));

Deno.test("console log returns what the driver kept and emits instance-console-retrieved", () =>
  withCore(async (core) => {
    await core.create("c1");
    const log = await core.consoles.log("c1");
    assert.equal(new TextDecoder().decode(log), "console of c1\n");
    assert.deepEqual(core.lifecycle, [
      { action: "instance-console-retrieved", source: "/1.0/instances/c1", context: {} },
    ]);
    await assert.rejects(core.consoles.log("nope"), NotFound);
  }));
