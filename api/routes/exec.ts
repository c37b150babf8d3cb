/** `POST /1.0/instances/{name}/exec`: commands in an instance, with recorded output. */
import { Hono } from "hono";
import { join } from "node:path";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest, InvalidState } from "../../agent/errors.ts";
import { parseBody } from "../body.ts";
import { async } from "../envelope.ts";
import { ExecPostSchema } from "../schemas.ts";
import { resources } from "./instances.ts";

export function execRoutes(agent: Agent): Hono {
  const app = new Hono();
  app.post("/1.0/instances/:name/exec", async (c) => {
    const name = c.req.param("name");
    const body = await parseBody(c, ExecPostSchema);
    const inst = agent.instances.get(name);
    if (body["wait-for-websocket"]) {
      throw new BadRequest("Websocket exec is not supported yet: use record-output");
    }
    if ((await agent.instances.status(inst)) !== "Running") {
      throw new InvalidState(`Instance "${name}" is not running`);
    }
    const op = agent.operations.start({
      description: "Executing command",
      resources: resources(name),
      metadata: { command: body.command, environment: body.environment, interactive: false },
      run: async () => {
        const result = await agent.instances.exec(name, {
          command: body.command,
          environment: body.environment,
          cwd: body.cwd,
          user: body.user,
          group: body.group,
        });
        const metadata: Record<string, unknown> = { return: result.code };
        if (body["record-output"]) {
          const dir = agent.paths.instanceLogs(name);
          await Deno.mkdir(dir, { recursive: true });
          const id = crypto.randomUUID().slice(0, 8);
          const out = `exec_${id}.stdout`;
          const err = `exec_${id}.stderr`;
          await Deno.writeFile(join(dir, out), result.stdout);
          await Deno.writeFile(join(dir, err), result.stderr);
          metadata.output = {
            "1": `/1.0/instances/${name}/logs/${out}`,
            "2": `/1.0/instances/${name}/logs/${err}`,
          };
        }
        return metadata;
      },
    });
    return async(c, op);
  });
  return app;
}
