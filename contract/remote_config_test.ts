import assert from "node:assert/strict";
import {
  configDir,
  emptyConfig,
  parseConfig,
  readConfig,
  serverCertFile,
  writeConfig,
} from "./remote_config.ts";

function env(vars: Record<string, string>) {
  return { get: (k: string) => vars[k] };
}

Deno.test("configDir() prefers OUTPOST_CONF, then XDG_CONFIG_HOME, then ~/.config", () => {
  assert.equal(configDir(env({ OUTPOST_CONF: "/c", XDG_CONFIG_HOME: "/x", HOME: "/h" })), "/c");
  assert.equal(configDir(env({ XDG_CONFIG_HOME: "/x", HOME: "/h" })), "/x/outpost");
  assert.equal(configDir(env({ HOME: "/h" })), "/h/.config/outpost");
});

Deno.test("readConfig() answers the empty config without a file and reads what writeConfig() wrote", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-conf-" });
  try {
    const sub = `${dir}/outpost`;
    assert.deepEqual(readConfig(sub), emptyConfig());
    const cfg = {
      "default-remote": "edge",
      remotes: { edge: { addr: "https://10.0.0.2:8443" } },
    };
    await writeConfig(sub, cfg);
    assert.deepEqual(readConfig(sub), cfg);
    assert.equal((await Deno.stat(`${sub}/config.yml`)).mode! & 0o777, 0o600);
    assert.equal(serverCertFile(sub, "edge"), `${sub}/servercerts/edge.crt`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfig() refuses what outpost would not write", () => {
  assert.throws(() => parseConfig("default-remote: local"), /not valid/);
  assert.throws(() => parseConfig(JSON.stringify({ remotes: { "a:b": { addr: "https://x" } } })));
  assert.throws(() => parseConfig(JSON.stringify({ remotes: { local: { addr: "https://x" } } })));
  assert.throws(() => parseConfig(JSON.stringify({ remotes: { e: { addr: "http://x" } } })));
  assert.deepEqual(parseConfig("{}"), emptyConfig());
});
