/** The host's facts: the OS from an os-release file, and the drivers as the registry probed them. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DriverRegistry } from "../drivers/registry.ts";
import { MemoryDriver } from "../tests/memory_driver.ts";
import { Host } from "./host.ts";

Deno.test("host info names the OS from os-release and lists every driver", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outpost-host-" });
  try {
    const osRelease = join(dir, "os-release");
    await Deno.writeTextFile(
      osRelease,
      'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n',
    );
    const vm = new MemoryDriver({ type: "virtual-machine" });
    vm.setUnavailable("qemu-system-x86_64 not found");
    const host = new Host(new DriverRegistry([new MemoryDriver(), vm]), osRelease);
    const info = host.info();
    assert.deepEqual(info.os, { name: "Debian GNU/Linux", version: "12" });
    assert.deepEqual(info.drivers.map((d) => [d.name, d.available, d.error]), [
      ["memory-container", true, ""],
      ["memory-virtual-machine", false, "qemu-system-x86_64 not found"],
    ]);
    assert.ok(info.architectures.length > 0 && info.kernelVersion !== "");
    assert.deepEqual(host.resources().drivers, info.drivers);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("host info without an os-release file names no OS", () => {
  const host = new Host(new DriverRegistry([]), "/nonexistent/os-release");
  assert.deepEqual(host.info().os, { name: "", version: "" });
});
