import assert from "node:assert/strict";
import { BadRequest } from "../../contract/errors.ts";
import { checkDevice, checkDevices, deviceReference } from "./device.ts";

const ctx = {
  pools: new Set(["default"]),
  networks: new Map([["br0", { ipv4: "10.9.9.1/24" }], ["bare", {}]]),
};
const ROOT = { type: "disk", path: "/", pool: "default" };

function refuses(fn: () => unknown, part: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequest, `expected a BadRequest, got ${err}`);
    assert.match(err.message, part);
    return true;
  });
}

Deno.test("checkDevice() takes none and the root disk on a pool that exists", () => {
  assert.equal(checkDevice("root", ROOT, ctx).type, "disk");
  assert.equal(checkDevice("eth0", { type: "none" }, ctx).type, "none");
  assert.equal(checkDevice("r", ROOT, { ...ctx, instanceType: "virtual-machine" }).type, "disk");
});

Deno.test("checkDevice() refuses bad names, types, keys and values, naming them", () => {
  refuses(() => checkDevice("a/b", ROOT, ctx), /Invalid device name/);
  refuses(() => checkDevice("a\nb", ROOT, ctx), /Invalid device name "a\?b"/);
  refuses(() => checkDevice("d", { path: "/" }, ctx), /has no type/);
  refuses(() => checkDevice("d", { type: "bogus" }, ctx), /unknown device type "bogus"/);
  refuses(
    () => checkDevice("d", { type: "usb", vendorid: "x" }, ctx),
    /"usb" is not supported yet/,
  );
  refuses(() => checkDevice("d", { type: "none", k: "v" }, ctx), /unknown key "k"/);
  refuses(() => checkDevice("d", { type: "disk", pool: "default" }, ctx), /needs a source/);
  refuses(() => checkDevice("d", { ...ROOT, path: "rel" }, ctx), /invalid "path"/);
  refuses(() => checkDevice("d", { ...ROOT, path: "/a/../b" }, ctx), /invalid "path"/);
  refuses(() => checkDevice("d", { ...ROOT, path: "/srv" }, ctx), /needs a source/);
  refuses(() => checkDevice("d", { type: "disk", path: "/" }, ctx), /needs a pool/);
  refuses(() => checkDevice("d", { ...ROOT, pool: "x y" }, ctx), /invalid "pool"/);
  refuses(() => checkDevice("d", { ...ROOT, pool: "fast" }, ctx), /pool "fast" does not exist/);
});

Deno.test("a nic is on a network that exists, with a fixed address inside its subnet", () => {
  const nic = { type: "nic", network: "br0" };
  assert.equal(checkDevice("eth0", nic, ctx).type, "nic");
  checkDevice("eth0", { ...nic, "ipv4.address": "10.9.9.20", hwaddr: "10:66:6a:00:00:01" }, ctx);
  checkDevice("eth0", { ...nic, name: "lan0", host_name: "vethlan0" }, ctx);
  refuses(() => checkDevice("eth0", { type: "nic" }, ctx), /needs "network"/);
  refuses(() => checkDevice("eth0", { type: "nic", network: "x" }, ctx), /network "x" does not/);
  for (const bad of ["10.9.8.20", "10.9.9.0", "10.9.9.255", "10.9.9.1"]) {
    refuses(() => checkDevice("e", { ...nic, "ipv4.address": bad }, ctx), /not a free host/);
  }
  refuses(() => checkDevice("e", { ...nic, "ipv4.address": "10.9.9.300" }, ctx), /IPv4/);
  refuses(
    () => checkDevice("e", { type: "nic", network: "bare", "ipv4.address": "10.0.0.2" }, ctx),
    /has no IPv4 subnet/,
  );
  refuses(() => checkDevice("e", { ...nic, hwaddr: "01:00:00:00:00:01" }, ctx), /unicast/);
  refuses(() => checkDevice("e", { ...nic, name: "a".repeat(16) }, ctx), /interface name/);
  refuses(() => checkDevice("e", { ...nic, host_name: "a b" }, ctx), /interface name/);
});

Deno.test("a disk from a host directory: containers only, paths an mount entry can carry", () => {
  const dir = { type: "disk", source: "/srv/data", path: "/data" };
  checkDevice("d", { ...dir, readonly: "true", shift: "true" }, ctx);
  checkDevice("d", dir, { ...ctx, instanceType: "container" });
  refuses(() => checkDevice("d", dir, { ...ctx, instanceType: "virtual-machine" }), /for VMs/);
  refuses(() => checkDevice("d", { ...dir, source: "rel" }, ctx), /not an absolute host path/);
  for (const bad of ["/a b", "/a,b", "/a\\b", "rel", "/a/../b", "/a\tb"]) {
    if (bad !== "rel") {
      refuses(() => checkDevice("d", { ...dir, source: bad }, ctx), /invalid "source"/);
    }
    refuses(() => checkDevice("d", { ...dir, path: bad }, ctx), /invalid "path"/);
  }
  refuses(() => checkDevice("d", { ...dir, readonly: "yes" }, ctx), /invalid "readonly"/);
  refuses(() => checkDevice("d", { ...ROOT, source: "/srv" }, ctx), /not a host path/);
  refuses(() => checkDevice("d", { ...dir, pool: "default" }, ctx), /names a custom volume/);
});

Deno.test("a custom volume disk: it exists; filesystem ones mount in containers, block ones go to VMs", () => {
  const vctx = {
    ...ctx,
    volumes: new Map([["default/data", "filesystem"], ["default/blk", "block"]] as const),
  };
  const fs = { type: "disk", pool: "default", source: "data", path: "/data" };
  const blk = { type: "disk", pool: "default", source: "blk" };
  checkDevice("d", fs, { ...vctx, instanceType: "container" });
  checkDevice("d", { ...fs, readonly: "true" }, vctx);
  checkDevice("d", blk, { ...vctx, instanceType: "virtual-machine" });
  refuses(() => checkDevice("d", { ...fs, source: "nope" }, vctx), /"nope" does not exist/);
  refuses(
    () => checkDevice("d", { type: "disk", pool: "default", source: "data" }, vctx),
    /needs "path"/,
  );
  refuses(
    () => checkDevice("d", fs, { ...vctx, instanceType: "virtual-machine" }),
    /use a block volume/,
  );
  refuses(() => checkDevice("d", { ...blk, path: "/x" }, vctx), /takes no "path"/);
  refuses(() => checkDevice("d", blk, { ...vctx, instanceType: "container" }), /are for VMs/);
  refuses(() => checkDevice("d", { ...fs, pool: "fast" }, vctx), /pool "fast" does not exist/);
  refuses(() => checkDevice("d", { ...fs, source: "a b" }, vctx), /invalid "source"/);
});

Deno.test("a proxy forwards tcp:ADDRESS:PORT into a container, from the host", () => {
  const px = { type: "proxy", listen: "tcp:0.0.0.0:8080", connect: "tcp:127.0.0.1:80" };
  checkDevice("web", px, { ...ctx, instanceType: "container" });
  checkDevice("web", { ...px, bind: "host" }, ctx);
  refuses(
    () => checkDevice("web", px, { ...ctx, instanceType: "virtual-machine" }),
    /does not fit/,
  );
  checkDevice("dns", { type: "proxy", listen: "udp:0.0.0.0:53", connect: "udp:127.0.0.1:53" }, ctx);
  refuses(
    () => checkDevice("dns", { type: "proxy", listen: "udp:0.0.0.0:53", connect: px.connect }, ctx),
    /both be tcp or both be udp/,
  );
  for (
    const bad of ["sctp:0.0.0.0:53", "tcp:0.0.0.0:0", "tcp:0.0.0.0:70000", "tcp:host:80", "80"]
  ) {
    refuses(() => checkDevice("web", { ...px, listen: bad }, ctx), /invalid "listen"/);
  }
  refuses(() => checkDevice("web", { ...px, bind: "instance" }, ctx), /invalid "bind"/);
  refuses(() => checkDevice("web", { type: "proxy", listen: px.listen }, ctx), /needs "connect"/);
});

Deno.test("checkDevices() allows one root disk at most", () => {
  checkDevices({ root: ROOT, hide: { type: "none" } }, ctx);
  refuses(() => checkDevices({ a: ROOT, b: ROOT }, ctx), /"a" and "b" are both a root disk/);
});

Deno.test("deviceReference() lists each type with its keys, and what is not supported yet", () => {
  const text = deviceReference();
  assert.match(text, /### `disk`/);
  assert.match(text, /\| `path` \| no \| no \|/);
  assert.match(text, /### `nic`/);
  assert.match(text, /### `proxy`/);
  assert.match(text, /Not supported yet \(refused by name\): `unix-char`/);
});
