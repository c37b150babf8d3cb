/**
 * Profiles end to end: a real daemon, real LXC containers, outpost's CLI and the stock LXD client
 * (skipped where `lxc` is not installed). A profile's limits reach a container's cgroup at launch
 * and, when the profile is edited, while it runs.
 */
import assert from "node:assert/strict";
import { readCgroupFile } from "../drivers/lxc/cgroups.ts";
import { Runner } from "../drivers/runner.ts";
import { HAS_LXC, sharedDaemon, StockLxc, type TestDaemon, uniqueName } from "./helpers.ts";

const runner = new Runner();
const memoryLimit = (pid: number) =>
  readCgroupFile(runner, pid, "memory", "memory.limit_in_bytes", "memory.max");
const daemon = sharedDaemon((d) => d.importBusybox("bb"));

/** `outpost config device add NAME DEVICE TYPE key=value...`. */
async function addDevice(d: TestDaemon, name: string, dev: string, ...rest: string[]) {
  await d.ok("config", "device", "add", name, dev, ...rest);
}

interface ShownInstance {
  profiles: string[];
  config: Record<string, string>;
  expanded_config: Record<string, string>;
  expanded_devices: Record<string, Record<string, string>>;
}

Deno.test("outpost profile: a stacked profile's limit reaches the cgroup, and an edit reaches it live", async () => {
  const d = await daemon();
  const name = uniqueName("pr");
  const small = uniqueName("small");
  try {
    assert.match(await d.ok("profile", "list"), /\| default +\| Default outpost profile +\|/);
    await d.ok("profile", "create", small, "--description", "small boxes");
    await d.ok("profile", "set", small, "limits.memory=96MiB");
    assert.equal((await d.ok("profile", "get", small, "limits.memory")).trim(), "96MiB");
    await d.ok("launch", "bb", name, "-p", "default", "-p", small, "-c", "limits.cpu=1");
    const { pid } = await d.lxcState(name);
    assert.equal(await memoryLimit(pid), String(96 * 2 ** 20));

    const shown = await d.api.get<ShownInstance>(`/1.0/instances/${name}`);
    assert.deepEqual(shown.profiles, ["default", small]);
    assert.equal(shown.config["limits.memory"], undefined);
    assert.equal(shown.expanded_config["limits.memory"], "96MiB");
    assert.equal(shown.expanded_config["limits.cpu"], "1");
    assert.deepEqual(shown.expanded_devices.root, { type: "disk", path: "/", pool: "default" });
    assert.doesNotMatch(await d.ok("config", "show", name), /limits\.memory/);
    assert.match(await d.ok("config", "show", name, "--expanded"), /limits\.memory: 96MiB/);

    // The profile edited: the running container's cgroup follows at once.
    await d.ok("profile", "set", small, "limits.memory", "128MiB");
    assert.equal(await memoryLimit(pid), String(128 * 2 ** 20));
    // Its own key wins over the profile's.
    await d.ok("config", "set", name, "limits.memory=80MiB");
    assert.equal(await memoryLimit(pid), String(80 * 2 ** 20));

    const listed = await d.ok("profile", "list", "--format", "csv");
    assert.match(listed, new RegExp(`^${small},small boxes,1$`, "m"));
    const inUse = await d.cli("profile", "delete", small);
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, new RegExp(`^Error: Profile "${small}" is used by "${name}"`));
    const gone = await d.cli("profile", "show", "nope");
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, 'Error: Profile "nope" not found\n');

    await d.ok("profile", "remove", name, small);
    await d.ok("profile", "delete", small);
    assert.doesNotMatch(await d.ok("profile", "list"), new RegExp(small));
  } finally {
    await d.cli("delete", name, "--force");
    await d.cli("profile", "delete", small);
  }
});

Deno.test("outpost launch --no-profiles makes an instance without the default profile", async () => {
  const d = await daemon();
  const name = uniqueName("np");
  try {
    await d.ok("init", "bb", name, "--no-profiles");
    const shown = await d.api.get<ShownInstance>(`/1.0/instances/${name}`);
    assert.deepEqual(shown.profiles, []);
    assert.deepEqual(shown.expanded_devices, {});
  } finally {
    await d.cli("delete", name, "--force");
  }
});

Deno.test({
  name: "the stock lxc client creates, sets, edits, copies, renames, assigns and deletes profiles",
  ignore: !HAS_LXC,
  async fn() {
    const d = await daemon();
    const lxc = await StockLxc.for(d);
    const name = uniqueName("lp");
    try {
      assert.match(await lxc.ok("profile", "list"), /\| default +\|/);
      await lxc.ok("profile", "create", "web");
      await lxc.ok("profile", "set", "web", "limits.memory", "72MiB");
      await lxc.ok("profile", "set", "web", "user.role=web");
      assert.match(await lxc.ok("profile", "show", "web"), /limits\.memory: 72MiB/);
      const edited = await lxc.run(
        ["profile", "edit", "web"],
        "description: edited\nconfig:\n  limits.memory: 80MiB\ndevices: {}\n",
      );
      assert.equal(edited.code, 0, edited.stderr);
      assert.equal((await lxc.ok("profile", "get", "web", "limits.memory")).trim(), "80MiB");
      await lxc.ok("profile", "copy", "web", "web2");
      await lxc.ok("profile", "rename", "web2", "web3");
      assert.match(await lxc.ok("profile", "list"), /\| web3 +\|/);

      await lxc.ok("launch", "bb", name, "-p", "default", "-p", "web");
      const { pid } = await d.lxcState(name);
      assert.equal(await memoryLimit(pid), String(80 * 2 ** 20));
      assert.match(await lxc.ok("config", "show", name, "--expanded"), /limits\.memory: 80MiB/);
      assert.match(await lxc.ok("profile", "show", "web"), new RegExp(`/1.0/instances/${name}`));
      // The pool the root disk is on, and the instance among its volumes.
      assert.match(await lxc.ok("storage", "list"), /\| default +\| dir +\|/);
      assert.match(
        await lxc.ok("storage", "volume", "list", "default"),
        new RegExp(`\\| container +\\| ${name} +\\|`),
      );
      await lxc.ok("profile", "add", name, "web3");
      await lxc.ok("profile", "assign", name, "default");
      assert.deepEqual((await d.api.get<ShownInstance>(`/1.0/instances/${name}`)).profiles, [
        "default",
      ]);
      // The root disk given by a profile, overridden into the instance's own devices.
      await lxc.ok("stop", name, "--force");
      await lxc.ok("config", "device", "override", name, "root");
      const own = await d.api.get<ShownInstance & { devices: unknown }>(`/1.0/instances/${name}`);
      assert.deepEqual(own.devices, { root: { type: "disk", path: "/", pool: "default" } });
      const bad = await lxc.run(["config", "device", "add", name, "eth0", "nic", "network=x"]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /network "x" does not exist/);
      // The rest of the stock client's device verbs on an instance.
      await lxc.ok(
        "config",
        "device",
        "add",
        name,
        "web",
        "proxy",
        "listen=tcp:127.0.0.1:20080",
        "connect=tcp:127.0.0.1:80",
      );
      await lxc.ok("config", "device", "set", name, "web", "connect=tcp:127.0.0.1:81");
      assert.equal(
        (await lxc.ok("config", "device", "get", name, "web", "connect")).trim(),
        "tcp:127.0.0.1:81",
      );
      assert.match(await lxc.ok("config", "device", "show", name), /web:\n(.*\n)*\s+type: proxy/);
      assert.match(await lxc.ok("config", "device", "list", name), /web/);
      await lxc.ok("config", "device", "remove", name, "web");
      assert.doesNotMatch(await lxc.ok("config", "device", "list", name), /web/);

      const inUse = await lxc.run(["profile", "delete", "default"]);
      assert.equal(inUse.code, 1);
      await lxc.ok("profile", "delete", "web");
      await lxc.ok("profile", "delete", "web3");
      assert.deepEqual(await d.api.get<string[]>("/1.0/profiles"), ["/1.0/profiles/default"]);
    } finally {
      await d.cli("delete", name, "--force");
      for (const p of ["web", "web2", "web3"]) await d.cli("profile", "delete", p);
    }
  },
});

Deno.test("a disk device shows a host directory in an unprivileged container: read-only, and its owners shifted or not", async () => {
  const d = await daemon();
  const name = uniqueName("dk");
  const dir = await Deno.makeTempDir({ prefix: "outpost-disk-" });
  try {
    await Deno.writeTextFile(`${dir}/f`, "host\n");
    await Deno.chmod(dir, 0o755);
    await d.ok("init", "bb", name);
    await addDevice(
      d,
      name,
      "data",
      "disk",
      `source=${dir}`,
      "path=/mnt/data",
      "readonly=true",
      "shift=true",
    );
    await d.ok(
      "config",
      "device",
      "add",
      name,
      "plain",
      "disk",
      `source=${dir}`,
      "path=/mnt/plain",
    );
    await d.ok("start", name);
    const sh = (script: string) => d.cli("exec", name, "--", "sh", "-c", script);
    assert.equal((await sh("cat /mnt/data/f")).stdout, "host\n");
    // Shifted: host root's file is the container root's; not shifted: nobody's.
    assert.equal((await sh("stat -c %u:%g /mnt/data/f")).stdout, "0:0\n");
    assert.equal((await sh("stat -c %u /mnt/plain/f")).stdout, "65534\n");
    const write = await sh("echo x > /mnt/data/new");
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /Read-only file system/);
    assert.equal(await Deno.stat(`${dir}/new`).catch(() => undefined), undefined);
    // Devices are refused while it runs; a source that is not there is refused at start.
    const live = await d.cli("config", "device", "remove", name, "plain");
    assert.equal(live.code, 1);
    assert.match(live.stderr, /cannot be changed while it is running/);
    await d.ok("stop", name, "--force");
    await d.ok("config", "device", "set", name, "plain", "source", `${dir}/missing`);
    const missing = await d.cli("start", name);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /source .*missing is not a directory on the host/);
    const bad = await d.cli("config", "device", "add", name, "x", "disk", "source=/a b", "path=/x");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid "source"/);
  } finally {
    await d.cli("delete", name, "--force");
    await Deno.remove(dir, { recursive: true });
  }
});

/** Waits up to 10 s for `ok()`. */
async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 100));
}

/** A UDP echo server on the container's loopback (the host's deno in its network namespace). */
async function udpEcho(pid: number, port: number): Promise<Deno.ChildProcess> {
  const code = `import { createSocket } from "node:dgram";
const s = createSocket("udp4");
s.on("message", (m, r) => s.send(Buffer.concat([Buffer.from("echo:"), m]), r.port, r.address));
s.bind(${port}, "127.0.0.1", () => console.log("ready"));`;
  const child = new Deno.Command("nsenter", {
    args: ["-t", String(pid), "-n", Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read(); // "ready"
  reader.releaseLock();
  void child.stdout.cancel();
  return child;
}

Deno.test("a udp proxy device carries each client's datagrams to the container and its replies back", async () => {
  const d = await daemon();
  const name = uniqueName("up");
  const port = 20000 + Math.floor(Math.random() * 20000);
  let echo: Deno.ChildProcess | undefined;
  const { createSocket } = await import("node:dgram");
  const clients: import("node:dgram").Socket[] = [];
  /** A client that sends `msgs` at once and answers the replies it got, in order of arrival. */
  const client = async (msgs: string[]) => {
    const s = createSocket("udp4");
    clients.push(s);
    const got: string[] = [];
    const all = new Promise<void>((resolve) =>
      s.on("message", (m) => {
        got.push(new TextDecoder().decode(m));
        if (got.length === msgs.length) resolve();
      })
    );
    for (const m of msgs) s.send(m, port, "127.0.0.1");
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([all, new Promise((r) => timer = setTimeout(r, 10_000))]);
    clearTimeout(timer);
    s.close();
    return got;
  };
  try {
    await d.ok("init", "bb", name);
    await addDevice(
      d,
      name,
      "dns",
      "proxy",
      `listen=udp:127.0.0.1:${port}`,
      "connect=udp:127.0.0.1:5353",
    );
    await d.ok("start", name);
    echo = await udpEcho((await d.lxcState(name)).pid, 5353);
    // Datagrams sent back to back stay datagrams; two clients each get their own replies.
    const [a, b] = await Promise.all([client(["a1", "a2", "a3"]), client(["b1", "b2"])]);
    assert.deepEqual(a.sort(), ["echo:a1", "echo:a2", "echo:a3"]);
    assert.deepEqual(b.sort(), ["echo:b1", "echo:b2"]);
    // Hostile: once a client's session exists, a process in the container sends to every UDP
    // port of the relay's sockets; the client still gets only the target's replies.
    const k = createSocket("udp4");
    clients.push(k);
    const got: string[] = [];
    k.on("message", (m) => got.push(new TextDecoder().decode(m)));
    k.send("k1", port, "127.0.0.1");
    await waitFor(() => got.length === 1);
    const pid = (await d.lxcState(name)).pid;
    const listing = await new Deno.Command("nsenter", {
      args: ["-t", String(pid), "-n", "ss", "-uan"],
      stdout: "piped",
    }).output();
    const ports = [...new TextDecoder().decode(listing.stdout).matchAll(/0\.0\.0\.0:(\d+)/g)]
      .map((m) => m[1]);
    assert.ok(ports.length > 0, "the relay's sockets are listed");
    const spoof = `import { createSocket } from "node:dgram";
const s = createSocket("udp4");
for (const p of ${
      JSON.stringify(ports)
    }) for (let i = 0; i < 20; i++) s.send("spoof", Number(p), "127.0.0.1");
setTimeout(() => s.close(), 300);`;
    await new Deno.Command("nsenter", {
      args: ["-t", String(pid), "-n", Deno.execPath(), "eval", spoof],
      stderr: "null",
    }).output();
    k.send("k2", port, "127.0.0.1");
    await waitFor(() => got.length >= 2);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(got, ["echo:k1", "echo:k2"]);
    // Stopped: the port is let go, and a taken one refuses the start, naming the device.
    await d.ok("stop", name, "--force");
    const taken = createSocket("udp4");
    await new Promise<void>((r) => taken.bind(port, "127.0.0.1", () => r()));
    try {
      const r = await d.cli("start", name);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Device "dns": cannot listen on udp:127\.0\.0\.1:\d+/);
    } finally {
      taken.close();
    }
  } finally {
    for (const s of clients) {
      try {
        s.close();
      } catch {
        // Closed by its client already.
      }
    }
    try {
      echo?.kill("SIGKILL");
      await echo?.status;
    } catch {
      // Gone with the container.
    }
    await d.cli("delete", name, "--force");
  }
});

Deno.test("a proxy device forwards a TCP port of the host into the container's own loopback", async () => {
  const d = await daemon();
  const name = uniqueName("px");
  const port = 20000 + Math.floor(Math.random() * 20000);
  const get = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    return await res.text();
  };
  try {
    await d.ok("init", "bb", name);
    await addDevice(
      d,
      name,
      "web",
      "proxy",
      `listen=tcp:127.0.0.1:${port}`,
      "connect=tcp:127.0.0.1:80",
    );
    await d.ok("start", name);
    // A server on the container's loopback only: reached from the host through the proxy alone.
    await d.ok(
      "exec",
      name,
      "--",
      "sh",
      "-c",
      "mkdir -p /www && echo hello > /www/index.html && httpd -p 127.0.0.1:80 -h /www",
    );
    assert.equal(await get(), "hello\n");
    const many = await Promise.all(Array.from({ length: 20 }, get));
    assert.deepEqual(new Set(many), new Set(["hello\n"]));
    // Stopped: the port is let go.
    await d.ok("stop", name, "--force");
    await assert.rejects(get());
    // A port the host cannot give refuses the start, naming the device.
    const taken = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      const r = await d.cli("start", name);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Device "web": cannot listen on tcp:127\.0\.0\.1:\d+/);
    } finally {
      taken.close();
    }
    assert.equal(await d.status(name), "Stopped");
  } finally {
    await d.cli("delete", name, "--force");
  }
});
