import assert from "node:assert/strict";
import { daemonInvocation } from "./main.ts";

Deno.test("daemonInvocation() takes the daemon's plain command lines and its state dir", () => {
  assert.deepEqual(daemonInvocation(["daemon"]), { stateDir: undefined, noNetwork: false });
  assert.deepEqual(daemonInvocation(["daemon", "--state-dir", "/s"]), {
    stateDir: "/s",
    noNetwork: false,
  });
  assert.deepEqual(daemonInvocation(["--state-dir", "/s", "daemon"]), {
    stateDir: "/s",
    noNetwork: false,
  });
  assert.deepEqual(daemonInvocation(["--state-dir=/s", "daemon"]), {
    stateDir: "/s",
    noNetwork: false,
  });
  assert.deepEqual(daemonInvocation(["daemon", "--no-network"]), {
    stateDir: undefined,
    noNetwork: true,
  });
  assert.equal(daemonInvocation(["daemon", "--no-network", "--no-network"]), null);
});

Deno.test("daemonInvocation() leaves help, unknown options and other commands to the CLI", () => {
  assert.equal(daemonInvocation(["daemon", "--help"]), null);
  assert.equal(daemonInvocation(["daemon", "--bogus"]), null);
  assert.equal(daemonInvocation(["daemon", "extra"]), null);
  assert.equal(daemonInvocation(["list"]), null);
  assert.equal(daemonInvocation(["daemon", "--state-dir"]), null);
  assert.equal(daemonInvocation([]), null);
});
