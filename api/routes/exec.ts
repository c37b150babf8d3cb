/**
 * `POST /1.0/instances/{name}/exec`: a command over websockets (`wait-for-websocket`), with
 * recorded output (`record-output`), or fire-and-wait; the exit code is `metadata.return`.
 */
import { Hono } from "hono";
import { join } from "node:path";
import type { Agent } from "../../agent/agent.ts";
import { InvalidState } from "../../agent/errors.ts";
import { ExecSession } from "../../agent/exec_session.ts";
import type { ExecProcess } from "../../drivers/driver.ts";
import { parseBody } from "../body.ts";
import { async } from "../envelope.ts";
import { ExecPostSchema } from "../schemas.ts";
import { resources } from "./instances.ts";

/** Recorded output beyond this many bytes per stream is read and dropped (the disk is shared). */
export const MAX_RECORDED_BYTES = 64 * 2 ** 20;

/**
 * Writes a stream to a file, at most MAX_RECORDED_BYTES of it; the rest is drained so the command
 * never blocks on a full pipe. Returns when the stream ends.
 */
async function record(stream: ReadableStream<Uint8Array>, path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  let left = MAX_RECORDED_BYTES;
  try {
    for await (const chunk of stream) {
      if (left <= 0) continue;
      const part = chunk.subarray(0, left);
      for (let off = 0; off < part.length;) off += await file.write(part.subarray(off));
      left -= part.length;
    }
  } finally {
    file.close();
  }
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<void> {
  for await (const _ of stream) { /* discarded */ }
}

export function execRoutes(agent: Agent): Hono {
  const app = new Hono();
  app.post("/1.0/instances/:name/exec", async (c) => {
    const name = c.req.param("name");
    const body = await parseBody(c, ExecPostSchema);
    const status = await agent.instances.status(agent.instances.get(name));
    if (status === "Frozen") {
      throw new InvalidState(`Instance "${name}" is frozen: resume it first`);
    }
    if (status !== "Running") throw new InvalidState(`Instance "${name}" is not running`);
    const interactive = body["wait-for-websocket"] && body.interactive;
    const spawn = () =>
      agent.instances.exec(name, {
        command: body.command,
        environment: body.environment,
        cwd: body.cwd || undefined,
        user: body.user,
        group: body.group,
      }, { interactive, width: body.width, height: body.height });
    const base = {
      description: "Executing command",
      resources: resources(name),
    };
    // As Incus: the command and its environment are not copied into the operation (its events
    // and stored rows would carry up to a whole request body each).

    if (body["wait-for-websocket"]) {
      const session = new ExecSession(interactive);
      return async(
        c,
        agent.operations.start({
          ...base,
          class: "websocket",
          metadata: { fds: session.secrets },
          websocket: (secret, req) => session.connect(secret, req),
          run: async (ctx) => ({ return: await session.run(spawn, ctx.signal) }),
        }),
      );
    }

    return async(
      c,
      agent.operations.start({
        ...base,
        metadata: {},
        run: async () => {
          const proc: ExecProcess = await spawn();
          await proc.stdin.close().catch(() => {});
          if (!body["record-output"]) {
            // Drained, not cancelled: a closed pipe would kill the command with SIGPIPE.
            await Promise.all([drain(proc.stdout), proc.stderr ? drain(proc.stderr) : undefined]);
            return { return: await proc.status };
          }
          const dir = agent.paths.instanceLogs(name);
          await Deno.mkdir(dir, { recursive: true });
          const id = crypto.randomUUID().slice(0, 8);
          const out = `exec_${id}.stdout`;
          const err = `exec_${id}.stderr`;
          await Promise.all([
            record(proc.stdout, join(dir, out)),
            proc.stderr
              ? record(proc.stderr, join(dir, err))
              : Deno.writeFile(join(dir, err), new Uint8Array()),
          ]);
          return {
            return: await proc.status,
            output: {
              "1": `/1.0/instances/${name}/logs/${out}`,
              "2": `/1.0/instances/${name}/logs/${err}`,
            },
          };
        },
      }),
    );
  });
  return app;
}
