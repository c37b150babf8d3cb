import assert from "node:assert/strict";
import { daemonInvocation } from "./main.ts";

Deno.test("daemonInvocation() takes the daemon's plain command lines and its state dir", () => {
  assert.equal(daemonInvocation(["daemon"]), undefined);
  assert.equal(daemonInvocation(["daemon", "--state-dir", "/s"]), "/s");
  assert.equal(daemonInvocation(["--state-dir", "/s", "daemon"]), "/s");
  assert.equal(daemonInvocation(["--state-dir=/s", "daemon"]), "/s");
});

Deno.test("daemonInvocation() leaves help, unknown options and other commands to the CLI", () => {
  assert.equal(daemonInvocation(["daemon", "--help"]), null);
  assert.equal(daemonInvocation(["daemon", "--bogus"]), null);
  assert.equal(daemonInvocation(["daemon", "extra"]), null);
  assert.equal(daemonInvocation(["list"]), null);
  assert.equal(daemonInvocation(["daemon", "--state-dir"]), null);
  assert.equal(daemonInvocation([]), null);
});
