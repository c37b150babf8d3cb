/**
 * `POST /1.0/instances/{name}/exec`: a command over websockets (`wait-for-websocket`), with
 * recorded output (`record-output`), or fire-and-wait; the exit code is `metadata.return`.
 */
import type { Agent } from "../../agent/agent.ts";
import { ExecSession } from "../../agent/exec_session.ts";
import { runToEnd } from "../../agent/exec_output.ts";
import { parseBody } from "../../server/body.ts";
import { async } from "../../server/envelope.ts";
import { ExecPostSchema } from "../../contract/schemas.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { resources } from "./instances.ts";

export function execRoutes(agent: Agent): Route[] {
  const exec: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, ExecPostSchema);
    const interactive = body["wait-for-websocket"] && body.interactive;
    const spawn = await agent.instances.prepareExec(name, {
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
          websocket: (secret, upgrade) => session.connect(secret, upgrade),
          run: async (ctx) => ({ return: await session.run(spawn, ctx.signal) }),
        }),
      );
    }

    return async(
      c,
      agent.operations.start({
        ...base,
        metadata: {},
        run: async () =>
          runToEnd(
            await spawn(),
            body["record-output"] ? agent.instanceLogs.recordTarget(name) : undefined,
          ),
      }),
    );
  };

  return table([
    ["POST", "/1.0/instances/:name/exec", "trusted", exec],
  ]);
}
