import assert from "node:assert/strict";
import { writeConfig } from "../contract/remote_config.ts";
import { UnixTransport } from "../contract/transport.ts";
import { CliContext } from "./context.ts";

/** Runs `fn` with OUTPOST_CONF at a temp dir holding `remotes` and `default-remote`. */
async function withConf(
  defaultRemote: string,
  fn: () => void | Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-ctx-" });
  const before = Deno.env.get("OUTPOST_CONF");
  Deno.env.set("OUTPOST_CONF", dir);
  try {
    await writeConfig(dir, {
      "default-remote": defaultRemote,
      remotes: { edge: { addr: "https://10.0.0.2:8443" } },
    });
    await fn();
  } finally {
    if (before === undefined) Deno.env.delete("OUTPOST_CONF");
    else Deno.env.set("OUTPOST_CONF", before);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the context's client goes to the named remote, else the default one", async () => {
  await withConf("edge", () => {
    const bare = new CliContext(() => "/s");
    assert.equal(bare.remoteName, "edge");
    assert.equal(bare.client.transport.host, "10.0.0.2:8443");
    assert.ok(!(bare.client.transport instanceof UnixTransport));
    const local = new CliContext(() => "/s");
    local.remote = "local";
    assert.ok(local.client.transport instanceof UnixTransport);
    assert.equal((local.client.transport as UnixTransport).socket, "/s/unix.socket");
    assert.ok(local.isRemote("edge") && local.isRemote("local") && !local.isRemote("images"));
  });
});

Deno.test("a default remote that is not configured is a one-line error", async () => {
  await withConf("gone", () => {
    assert.throws(() => new CliContext().client, /Remote "gone" is not configured/);
  });
});
