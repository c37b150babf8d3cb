import assert from "node:assert/strict";
import {
  checkConfigKey,
  checkInstanceConfig,
  checkServerKey,
  configReference,
  findInstanceKey,
  INSTANCE_KEYS,
  isLive,
} from "./config_keys.ts";
import { isTrue } from "../contract/units.ts";
import { BadRequest } from "../contract/errors.ts";

/** Asserts that `fn` throws a BadRequest whose message contains every part. */
function assertBadRequest(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequest, `expected a BadRequest, got ${err}`);
    for (const part of parts) {
      assert.ok(err.message.includes(part), `"${err.message}" should contain "${part}"`);
    }
    return true;
  });
}

Deno.test("checkConfigKey() accepts a CPU count and a CPU set for limits.cpu", () => {
  // "0" is not a count but is a valid CPU set (CPU 0 alone).
  for (const value of ["1", "2", "16", "0", "0-1,3", "0-3", "5"]) {
    assert.equal(checkConfigKey("limits.cpu", value, "container").key, "limits.cpu");
  }
  assert.equal(checkConfigKey("limits.cpu", "2", "virtual-machine").key, "limits.cpu");
});

Deno.test("checkConfigKey() refuses a malformed limits.cpu, naming the key", () => {
  for (const value of ["", "two", "-1", "3-1", "0,,1", "1.5"]) {
    assertBadRequest(
      () => checkConfigKey("limits.cpu", value, "container"),
      '"limits.cpu"',
      `"${value}"`,
    );
  }
});

Deno.test("checkConfigKey() accepts byte sizes and percentages for limits.memory", () => {
  for (const value of ["64MiB", "1GB", "50%", "512", "1.5GiB", "100%", "12.5%"]) {
    assert.equal(checkConfigKey("limits.memory", value, "container").key, "limits.memory");
  }
});

Deno.test("checkConfigKey() refuses a bad limits.memory, naming the key and the fix", () => {
  for (const value of ["", "lots", "0", "0MiB", "64XB", "-1GB", "%", "50 %"]) {
    assertBadRequest(
      () => checkConfigKey("limits.memory", value, "container"),
      '"limits.memory"',
      "256MiB",
    );
  }
});

Deno.test("checkConfigKey() accepts a positive limits.processes and refuses others", () => {
  assert.equal(checkConfigKey("limits.processes", "100", "container").key, "limits.processes");
  for (const value of ["0", "-5", "ten", "", "01", "1.5"]) {
    assertBadRequest(
      () => checkConfigKey("limits.processes", value, "container"),
      '"limits.processes"',
      "positive integer",
    );
  }
});

Deno.test("checkConfigKey() accepts boolean spellings for boot.autostart", () => {
  for (const value of ["true", "false", "1", "0"]) {
    assert.equal(checkConfigKey("boot.autostart", value, "container").key, "boot.autostart");
  }
  for (const value of ["yes", "TRUE", ""]) {
    assertBadRequest(
      () => checkConfigKey("boot.autostart", value, "container"),
      '"boot.autostart"',
      "true or false",
    );
  }
});

Deno.test("checkConfigKey() refuses an unknown key, naming it", () => {
  assertBadRequest(() => checkConfigKey("x", "1", "container"), 'Unknown config key "x"');
  assertBadRequest(
    () => checkConfigKey("limits.bogus", "1", "virtual-machine"),
    'Unknown config key "limits.bogus"',
  );
});

Deno.test("checkConfigKey() refuses a container-only key on a virtual machine", () => {
  for (const key of ["limits.processes", "security.privileged", "security.nesting"]) {
    assertBadRequest(
      () => checkConfigKey(key, key === "limits.processes" ? "10" : "true", "virtual-machine"),
      `"${key}"`,
      "does not apply to a virtual machine",
    );
  }
});

Deno.test("checkConfigKey() accepts environment.* and user.* keys with any value", () => {
  assert.equal(checkConfigKey("environment.FOO", "bar baz", "container").key, "environment.FOO");
  assert.equal(checkConfigKey("user.note", "", "container").key, "user.note");
  assert.equal(
    checkConfigKey("user.meta-data", "anything: at all", "virtual-machine").key,
    "user.meta-data",
  );
});

Deno.test("checkConfigKey() refuses a bare namespace prefix", () => {
  assertBadRequest(() => checkConfigKey("user.", "x", "container"), 'Unknown config key "user."');
  assertBadRequest(
    () => checkConfigKey("environment.", "x", "container"),
    'Unknown config key "environment."',
  );
});

Deno.test("checkInstanceConfig() accepts a valid map and refuses the first bad key", () => {
  checkInstanceConfig({
    "limits.cpu": "2",
    "limits.memory": "64MiB",
    "limits.processes": "50",
    "boot.autostart": "true",
    "environment.A": "b",
    "user.x": "y",
  }, "container");
  checkInstanceConfig({}, "virtual-machine");
  assertBadRequest(
    () => checkInstanceConfig({ "limits.cpu": "2", "nope": "1" }, "container"),
    'Unknown config key "nope"',
  );
  assertBadRequest(
    () => checkInstanceConfig({ "limits.memory": "huge" }, "container"),
    '"limits.memory"',
  );
});

Deno.test("checkServerKey() accepts user.* and the core keys, and refuses other keys and bad values, naming them", () => {
  assert.equal(checkServerKey("user.owner", "ops").key, "user.owner");
  for (
    const v of ["", ":8443", "[::]:8443", "[::]", "0.0.0.0", "127.0.0.1:1", "host.example:443"]
  ) {
    assert.equal(checkServerKey("core.https_address", v).key, "core.https_address", v);
  }
  for (const v of ["127.0.0.1:0", "127.0.0.1:65536", "[zz]:1", "a b", "1.2.3.4:x", "[::1"]) {
    assertBadRequest(() => checkServerKey("core.https_address", v), '"core.https_address"');
  }
  assert.equal(
    checkServerKey("core.remote_token_expiry", "1H 30M").key,
    "core.remote_token_expiry",
  );
  assertBadRequest(
    () => checkServerKey("core.remote_token_expiry", "1 hour"),
    "remote_token_expiry",
  );
  assertBadRequest(() => checkServerKey("core.metrics_authentication", "maybe"), "metrics_auth");
  assertBadRequest(() => checkServerKey("core.trust_password", "x"), '"core.trust_password"');
  assertBadRequest(() => checkServerKey("user.", "x"), '"user."');
  assertBadRequest(() => checkServerKey("limits.cpu", "2"), '"limits.cpu"');
});

Deno.test("isTrue() accepts true and 1 only", () => {
  assert.equal(isTrue("true"), true);
  assert.equal(isTrue("1"), true);
  assert.equal(isTrue("false"), false);
  assert.equal(isTrue("0"), false);
  assert.equal(isTrue(undefined), false);
});

Deno.test("configReference() documents every key and namespace", () => {
  const doc = configReference();
  for (const k of INSTANCE_KEYS) {
    assert.ok(doc.includes(`| ${k.key} |`), `reference should list ${k.key}`);
    assert.ok(doc.includes(k.doc), `reference should describe ${k.key}`);
  }
  for (const ns of ["environment.*", "user.*", "image.*", "volatile.*"]) {
    assert.ok(doc.includes(`\`${ns}\``), `reference should list ${ns}`);
  }
  assert.ok(doc.includes("## Server keys"));
});

Deno.test({
  name: "checkConfigKey() refuses an absurdly large CPU range quickly, naming the key",
  fn() {
    const started = performance.now();
    assertBadRequest(
      () => checkConfigKey("limits.cpu", "0-99999999", "container"),
      '"limits.cpu"',
    );
    assert.ok(performance.now() - started < 1000, "validation should not take seconds");
  },
});

Deno.test("checkConfigKey() refuses keys that could inject a line into a generated file", () => {
  const hook = 'lxc.hook.pre-start = /bin/sh -c "id > /tmp/x"';
  for (
    const key of [
      `environment.Z=1\n${hook}\nlxc.environment = W`,
      "environment.A B",
      "environment.A=B",
      "environment.1ABC",
      `user.x\nlxc.mount.entry = /etc etc none bind 0 0`,
      "user.a b",
      "limits.memory\n",
      "",
    ]
  ) {
    assertBadRequest(() => checkConfigKey(key, "1", "container"), "config key");
  }
  assertBadRequest(() => checkServerKey("user.x\ny", "1"), "Invalid config key");
});

Deno.test("checkConfigKey() refuses environment values the LXC config cannot carry", () => {
  for (const value of ["a\nb", "a\rb", "a\u0000b", "\u001b[0m", " lead", "trail "]) {
    assertBadRequest(
      () => checkConfigKey("environment.FOO", value, "container"),
      "environment.FOO",
    );
  }
  checkConfigKey("environment.FOO", "a b c = d", "container");
  assertBadRequest(() => checkConfigKey("environment.FOO", "a\tb", "container"), "control");
  // user.* never reaches a generated file: multi-line values (cloud-init) are kept, NUL is not.
  checkConfigKey("user.user-data", "#cloud-config\npackages: []\n", "container");
  assertBadRequest(() => checkConfigKey("user.x", "a\u0000b", "container"), "NUL");
});

Deno.test("checkConfigKey() range-checks limits so an instance can always start", () => {
  for (const v of ["0%", "0", "0MiB", "1000EiB", "101%", "1e9", "-1"]) {
    assertBadRequest(() => checkConfigKey("limits.memory", v, "container"), "limits.memory");
  }
  for (const v of ["99999999999999999999999", "4194305", "0", "-5", "1.5"]) {
    assertBadRequest(() => checkConfigKey("limits.processes", v, "container"), "limits.processes");
  }
  for (const v of ["99999", "8193"]) {
    assertBadRequest(() => checkConfigKey("limits.cpu", v, "container"), "limits.cpu");
  }
  checkConfigKey("limits.memory", "1EiB", "container");
  checkConfigKey("limits.memory", "100%", "container");
  checkConfigKey("limits.processes", "4194304", "container");
  checkConfigKey("limits.cpu", "8192", "container");
});

Deno.test("the key table says which keys are live per instance type: a VM's limits wait for a start", () => {
  const live = (key: string, type: "container" | "virtual-machine") =>
    isLive(findInstanceKey(key, type)!, type);
  assert.equal(live("limits.memory", "container"), true);
  assert.equal(live("limits.cpu", "container"), true);
  assert.equal(live("limits.memory", "virtual-machine"), false);
  assert.equal(live("limits.cpu", "virtual-machine"), false);
  assert.equal(live("user.x", "virtual-machine"), true);
  assert.equal(live("security.privileged", "container"), false);
});
