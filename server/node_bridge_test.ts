import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { createServer } from "node:http";
import { serveApp, SERVER_OPTIONS, toRequest } from "./node_bridge.ts";

const incoming = (url: string, method = "GET", rawHeaders: string[] = []) =>
  ({ url, method, rawHeaders }) as unknown as IncomingMessage;

Deno.test("toRequest() keeps the path and query of origin-form and absolute-form targets", () => {
  assert.equal(
    new URL(toRequest(incoming("/1.0/instances?recursion=1")).url).pathname,
    "/1.0/instances",
  );
  const abs = new URL(toRequest(incoming("http://outpost/1.0/images?x=1")).url);
  assert.equal(abs.pathname + abs.search, "/1.0/images?x=1");
});

Deno.test("toRequest() never resolves a network-path target to another path", () => {
  assert.equal(new URL(toRequest(incoming("//evil/1.0")).url).pathname, "//evil/1.0");
  assert.equal(new URL(toRequest(incoming("*")).url).pathname, "/");
});

Deno.test("toRequest() keeps headers it can and refuses methods the fetch API cannot carry", () => {
  const req = toRequest(incoming("/1.0", "GET", ["X-Incus-Type", "file", "Bad\nName", "x"]));
  assert.equal(req.headers.get("x-incus-type"), "file");
  assert.throws(() => toRequest(incoming("/1.0", "TRACE")), TypeError);
});

Deno.test("a refused upload's answer reaches the client: the unread body is dropped, not reset", async () => {
  const server = createServer(SERVER_OPTIONS);
  serveApp(server, {
    // Reads a little of the body, then refuses it, as the app does with a body too large.
    fetch: async (req) => {
      const reader = req.body!.getReader();
      await reader.read();
      await reader.cancel();
      return new Response('{"error":"too large"}', { status: 413 });
    },
    callerOf: () => ({ via: "unix" }),
    log: () => {},
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const size = 20 * 2 ** 20;
    const head =
      `POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`;
    const writing = (async () => {
      const all = async (bytes: Uint8Array) => {
        for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
      };
      await all(new TextEncoder().encode(head));
      const chunk = new Uint8Array(64 * 1024);
      for (let sent = 0; sent < size; sent += chunk.length) await all(chunk);
    })().catch(() => {});
    const got: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      got.push(buf.slice(0, n));
    }
    await writing;
    conn.close();
    const text = new TextDecoder().decode(
      got.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
    );
    assert.match(text, /^HTTP\/1\.1 413/);
    assert.match(text, /too large/);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
