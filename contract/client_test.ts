import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiClient, ApiError, dechunk } from "./client.ts";

/** A Deno server on a temp unix socket, for the duration of `fn`. */
async function withServer(
  handler: (req: Request) => Response | Promise<Response>,
  fn: (client: ApiClient) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "outpost-client-" });
  const path = join(dir, "unix.socket");
  const server = Deno.serve({ path, transport: "unix", onListen: () => {} }, handler);
  const client = new ApiClient(path);
  try {
    await fn(client);
  } finally {
    client.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

const envelope = (metadata: unknown) => ({ type: "sync", status_code: 200, metadata });

Deno.test("request() sends JSON and reads a JSON answer of known length", async () => {
  await withServer(async (req) => {
    const body = await req.json();
    return Response.json(envelope({ method: req.method, url: new URL(req.url).pathname, body }));
  }, async (client) => {
    const env = await client.request("PATCH", "/1.0/instances/c1", { body: { a: "é" } });
    assert.deepEqual(env.metadata, { method: "PATCH", url: "/1.0/instances/c1", body: { a: "é" } });
  });
});

Deno.test("request() reads a streamed (chunked) answer larger than its first buffer", async () => {
  const big = "x".repeat(300_000);
  await withServer(() => {
    const text = JSON.stringify(envelope({ big }));
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < text.length; i += 10_000) {
          c.enqueue(new TextEncoder().encode(text.slice(i, i + 10_000)));
        }
        c.close();
      },
    });
    return new Response(stream, { headers: { "Content-Type": "application/json" } });
  }, async (client) => {
    assert.equal((await client.get<{ big: string }>("/1.0")).big, big);
  });
});

Deno.test("request() turns an error envelope into an ApiError with its status", async () => {
  await withServer(
    () =>
      Response.json({ type: "error", error: "Instance not found", error_code: 404 }, {
        status: 404,
      }),
    async (client) => {
      await assert.rejects(client.get("/1.0/instances/x"), (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.status, 404);
        assert.equal(err.message, "Instance not found");
        return true;
      });
    },
  );
});

Deno.test("a missing daemon is named, with the fix", async () => {
  const client = new ApiClient("/nonexistent/outpost/unix.socket");
  await assert.rejects(client.get("/1.0"), /Cannot reach the outpost daemon at \/nonexistent/);
});

Deno.test("a request path with a line break is refused before anything is sent", async () => {
  await withServer(() => Response.json(envelope("reached")), async (client) => {
    await assert.rejects(client.get("/1.0\r\nX-Injected: 1"), /Invalid request path/);
  });
});

Deno.test("dechunk() joins chunks and refuses a truncated body", () => {
  const enc = new TextEncoder();
  assert.equal(
    new TextDecoder().decode(dechunk(enc.encode("3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"))),
    "abcde",
  );
  assert.throws(() => dechunk(enc.encode("5\r\nab")), /Truncated/);
});
