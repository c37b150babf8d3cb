/**
 * The hub's tunnel against the host's own socket: the same API calls made directly and through a
 * hub on loopback (request relayed down the host's tunnel), and the hub's memory with a host.
 */
import { join } from "node:path";
import { ApiClient } from "../contract/client.ts";
import type { FleetHost } from "../contract/fleet.ts";
import {
  freePort,
  outpostArgv,
  spawnServer,
  TestDaemon,
  uniqueName,
  waitUntil,
} from "../tests/helpers.ts";
import { median, ROUNDS, timed } from "./cli.ts";

function row(what: string, viaHub: number, direct: number): void {
  console.log(
    `${what.padEnd(38)} via hub ${viaHub.toFixed(1).padStart(8)} ms   direct ${
      direct.toFixed(1).padStart(8)
    } ms   ratio ${(viaHub / direct).toFixed(2)}`,
  );
}

async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

export async function fleet(): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "outpost-bench-fleet-" });
  const hubDir = join(root, "hub");
  const port = freePort();
  const hubApi = new ApiClient(join(hubDir, "hub.socket"));
  let hub: Deno.ChildProcess | undefined;
  const d = await TestDaemon.start();
  try {
    hub = await spawnServer(
      [...outpostArgv(), "hub", "--state-dir", hubDir, "--listen", `127.0.0.1:${port}`],
      { logFile: join(root, "hub.log"), ready: () => hubApi.get("/fleet/v1") },
    );
    const created = await hubApi.request<{ token: string }>("POST", "/fleet/v1/tokens", {
      body: {},
    });
    await d.ok(
      "enroll",
      `https://127.0.0.1:${port}`,
      "--token",
      (created.metadata as { token: string }).token,
      "--name",
      "bench",
    );
    await waitUntil(
      "the host online",
      async () => (await hubApi.get<FleetHost>("/fleet/v1/hosts/bench")).status === "online",
    );
    const viaHub = new ApiClient(join(hubDir, "hub.socket"), { basePath: "/fleet/v1/hosts/bench" });
    await d.importBusybox();
    const name = uniqueName("b");
    await d.ok("launch", "busybox", name);
    const path = `/1.0/instances/${name}`;

    const rounds = Math.max(ROUNDS, 20);
    const list: number[] = [];
    const listDirect: number[] = [];
    const exec: number[] = [];
    const execDirect: number[] = [];
    for (let i = 0; i < rounds; i++) {
      list.push(await timed(() => viaHub.get("/1.0/instances?recursion=1")));
      listDirect.push(await timed(() => d.api.get("/1.0/instances?recursion=1")));
      const body = { body: { command: ["true"], "record-output": false } };
      exec.push(await timed(() => viaHub.run("POST", `${path}/exec`, body)));
      execDirect.push(await timed(() => d.api.run("POST", `${path}/exec`, body)));
    }
    const mib = crypto.getRandomValues(new Uint8Array(64 * 1024));
    const big = new Uint8Array(8 * 2 ** 20);
    for (let i = 0; i < big.length; i += mib.length) big.set(mib, i);
    await d.api.request("POST", `${path}/files?path=/tmp/big`, { raw: big });
    const pull: number[] = [];
    const pullDirect: number[] = [];
    for (let i = 0; i < 5; i++) {
      pull.push(
        await timed(async () =>
          (await viaHub.fetch("GET", `${path}/files?path=/tmp/big`)).arrayBuffer()
        ),
      );
      pullDirect.push(
        await timed(async () =>
          (await d.api.fetch("GET", `${path}/files?path=/tmp/big`)).arrayBuffer()
        ),
      );
    }
    console.log(`fleet: a host's API through the hub's tunnel (median of ${rounds}):`);
    row("GET /1.0/instances?recursion=1", median(list), median(listDirect));
    row("exec `true` (API, until exit code)", median(exec), median(execDirect));
    row("file pull 8 MiB", median(pull), median(pullDirect));
    console.log(`${"hub RSS with one host".padEnd(38)} ${(await rssMiB(hub.pid)).toFixed(1)} MiB`);
    await d.ok("delete", "--force", name);
  } finally {
    hub?.kill("SIGKILL");
    await hub?.status;
    await d.cleanup();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
