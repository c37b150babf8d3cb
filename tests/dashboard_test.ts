/**
 * The hub's dashboard in a real browser (Debian's chromium, driven by playwright-core): a one-time
 * login link, the hosts and their instances, a Stop button that stops a real container, and the
 * page following the change live. A hub and an agent on loopback.
 */
import assert from "node:assert/strict";
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
} from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const HAS_CHROMIUM = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

/** Width and height of a PNG, from its IHDR chunk (throws when it is not a PNG). */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...png.subarray(0, 8)], signature, "a PNG");
  assert.equal(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
  const view = new DataView(png.buffer, png.byteOffset);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

async function hubCli(dir: string, ...args: string[]): Promise<string> {
  const [exe, ...rest] = outpostArgv();
  const out = await new Deno.Command(exe, {
    args: [...rest, "--state-dir", dir, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return dec.decode(out.stdout);
}

Deno.test({
  name: "the dashboard logs in with a one-time link, shows hosts and instances, and Stop stops one",
  ignore: !HAS_CHROMIUM || Deno.uid() !== 0,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "outpost-dash-" });
    const hubDir = join(root, "hub");
    const port = freePort();
    const hubUrl = `https://127.0.0.1:${port}`;
    const hubApi = new ApiClient(join(hubDir, "hub.socket"));
    let hub: Deno.ChildProcess | undefined;
    let agent: TestDaemon | undefined;
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      hub = await spawnServer(
        [
          ...outpostArgv(),
          "hub",
          "--state-dir",
          hubDir,
          "--listen",
          `127.0.0.1:${port}`,
          "--heartbeat",
          "1",
        ],
        { logFile: join(root, "hub.log"), ready: () => hubApi.get("/fleet/v1") },
      );
      agent = await TestDaemon.start();
      await agent.importBusybox();
      const name = uniqueName("db");
      await agent.ok("launch", "busybox", name);
      const token = (await hubCli(hubDir, "hub", "token", "create")).split("\n")[1];
      await agent.ok("enroll", hubUrl, "--token", token, "--name", "dash-edge");
      await waitUntil("the host online with its instance", async () => {
        const h = await hubApi.get<FleetHost>("/fleet/v1/hosts/dash-edge");
        return h.status === "online" &&
          h.inventory!.instances.some((i) => i.name === name && i.status === "Running");
      });

      // Without a session the dashboard is refused; a login link works once.
      const stranger = await browser.newContext({ ignoreHTTPSErrors: true });
      const refused = await (await stranger.newPage()).goto(`${hubUrl}/dashboard`);
      assert.equal(refused?.status(), 403);
      const link = (await hubCli(hubDir, "hub", "dashboard")).trim().split("\n").at(-1)!;
      assert.match(link, new RegExp(`^${hubUrl}/dashboard/login\\?token=[0-9a-f]{64}$`));
      const context = await browser.newContext({
        ignoreHTTPSErrors: true,
        viewport: { width: 1100, height: 700 },
      });
      const page = await context.newPage();
      const landed = await page.goto(link);
      assert.equal(landed?.status(), 200);
      assert.equal(new URL(page.url()).pathname, "/dashboard");
      const reused = await (await stranger.newPage()).goto(link);
      assert.equal(reused?.status(), 403);
      await stranger.close();

      const card = page.locator("#host-dash-edge");
      assert.equal(await card.getAttribute("data-status"), "online");
      assert.match(await card.innerText(), /outpost 0\.1\.0/);
      const row = card.locator(`tr[data-instance="${name}"]`);
      assert.equal(await row.getAttribute("data-state"), "Running");
      const before = await card.screenshot();
      const size = pngSize(before);
      assert.ok(size.width > 600 && size.height > 80, JSON.stringify(size));

      // A request from outside the page (no same-origin marks) is refused even with the cookie.
      const forged = await context.request.post(
        `${hubUrl}/dashboard/hosts/dash-edge/instances/${name}/stop`,
      );
      assert.equal(forged.status(), 403);
      assert.equal(await agent.status(name), "Running");

      // Stop, clicked: the container stops, and the page shows it without a reload.
      await row.getByRole("button", { name: "Stop" }).click();
      await waitUntil(
        "the container stopped",
        async () => (await agent!.status(name)) === "Stopped",
      );
      await page.locator(`#host-dash-edge tr[data-instance="${name}"][data-state="Stopped"]`)
        .waitFor({ timeout: 30_000 });
      await page.locator("#host-dash-edge ul.events li", { hasText: "instance-shutdown" })
        .first().waitFor({ timeout: 30_000 });
      const after = await card.screenshot();
      assert.ok(pngSize(after).width === size.width);
      assert.notDeepEqual(after, before, "the card looks different once the instance stopped");

      // The host going away shows as offline, live.
      await agent.stop();
      await page.locator('#host-dash-edge[data-status="offline"]').waitFor({ timeout: 30_000 });
      await agent.spawn();
      await agent.ok("delete", "--force", name);
    } catch (err) {
      console.error(await Deno.readTextFile(join(root, "hub.log")).catch(() => ""));
      throw err;
    } finally {
      await browser.close();
      hub?.kill("SIGKILL");
      await hub?.status;
      if (agent) {
        await agent.stop();
        await Deno.remove(agent.dir, { recursive: true }).catch(() => {});
      }
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
