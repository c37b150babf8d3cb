import assert from "node:assert/strict";
import { fsUsage, mountOf } from "./statfs.ts";

Deno.test("fsUsage() reads a real filesystem's size, free and available bytes", () => {
  const u = fsUsage("/tmp")!;
  assert.ok(u.size > 0 && u.free > 0 && u.avail > 0 && u.avail <= u.free && u.free <= u.size);
  assert.equal(fsUsage("/nonexistent/path"), undefined);
  assert.equal(fsUsage("/tmp\0x"), undefined);
});

Deno.test("mountOf() finds the longest mount point holding a path, escapes undone", () => {
  const info = [
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
    "30 22 0:26 / /var/lib rw shared:2 - tmpfs tmpfs rw",
    "31 22 0:27 / /var/lib\\040x rw shared:3 - xfs /dev/my\\040disk rw",
  ].join("\n");
  assert.deepEqual(mountOf(info, "/var/lib/outpost/containers/c1/rootfs"), {
    fstype: "tmpfs",
    source: "tmpfs",
  });
  assert.deepEqual(mountOf(info, "/var/lib x/c"), { fstype: "xfs", source: "/dev/my disk" });
  assert.deepEqual(mountOf(info, "/var/libx"), { fstype: "ext4", source: "/dev/vda" });
});
