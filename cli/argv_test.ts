import assert from "node:assert/strict";
import { selectRemote } from "./argv.ts";

const known = (name: string) => ["local", "edge", "edge.2"].includes(name);

Deno.test("selectRemote() strips REMOTE: from words and selects that remote", () => {
  assert.deepEqual(selectRemote(["list", "edge:"], known), { remote: "edge", args: ["list"] });
  assert.deepEqual(selectRemote(["launch", "edge:busybox", "edge:c1"], known), {
    remote: "edge",
    args: ["launch", "busybox", "c1"],
  });
  assert.deepEqual(selectRemote(["file", "push", "f", "edge.2:web/root/"], known), {
    remote: "edge.2",
    args: ["file", "push", "f", "web/root/"],
  });
  assert.deepEqual(selectRemote(["info", "local:c1"], known), {
    remote: "local",
    args: ["info", "c1"],
  });
});

Deno.test("selectRemote() leaves words after --, unknown prefixes and key=value alone", () => {
  assert.deepEqual(selectRemote(["exec", "edge:c1", "--", "echo", "edge:x"], known), {
    remote: "edge",
    args: ["exec", "c1", "--", "echo", "edge:x"],
  });
  const plain = ["config", "set", "c1", "user.x=edge:b", "images:debian", "./edge:f"];
  assert.deepEqual(selectRemote(plain, known), { remote: undefined, args: plain });
  assert.deepEqual(selectRemote(["--state-dir", "edge:s", "list"], known), {
    remote: undefined,
    args: ["--state-dir", "edge:s", "list"],
  });
});

Deno.test("selectRemote() refuses two remotes and skips remote and trust commands", () => {
  assert.throws(() => selectRemote(["launch", "local:busybox", "edge:c1"], known), /two remotes/);
  for (const args of [["remote", "add", "edge", "edge:x"], ["config", "trust", "list", "edge:"]]) {
    assert.deepEqual(selectRemote(args, known), { args });
  }
});

Deno.test("selectRemote() takes the host after a hub remote: hub:edge-1:web, hub:edge-1:", () => {
  const known = (n: string) => n === "hub" || n === "edge";
  const hub = (n: string) => n === "hub";
  assert.deepEqual(selectRemote(["exec", "hub:edge-1:web", "--", "ps"], known, hub), {
    remote: "hub",
    host: "edge-1",
    args: ["exec", "web", "--", "ps"],
  });
  assert.deepEqual(selectRemote(["list", "hub:edge-1:"], known, hub), {
    remote: "hub",
    host: "edge-1",
    args: ["list"],
  });
  // A daemon remote's words keep their colons; two hosts on one line are refused.
  assert.deepEqual(selectRemote(["exec", "edge:a:b"], known, hub), {
    remote: "edge",
    args: ["exec", "a:b"],
  });
  assert.throws(
    () => selectRemote(["copy", "hub:e1:a", "hub:e2:b"], known, hub),
    /names two hosts \("e1" and "e2"\)/,
  );
});
