/**
 * `/1.0/instances/{name}/console`: POST attaches a websocket session to the console (fds `0` and
 * `control`, resizes through `window-resize`); GET returns the console log kept since start.
 */
import type { Agent } from "../../agent/agent.ts";
import { ExecSession } from "../../agent/exec_session.ts";
import { parseBody } from "../../server/body.ts";
import { async } from "../../server/envelope.ts";
import { ConsolePostSchema } from "../../contract/schemas.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { resources } from "./instances.ts";

export function consoleRoutes(agent: Agent): Route[] {
  const attach: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, ConsolePostSchema);
    const spawn = await agent.consoles.prepare(name, body);
    const session = new ExecSession(true, true);
    return async(
      c,
      agent.operations.start({
        description: "Showing console",
        class: "websocket",
        resources: resources(name),
        metadata: { fds: session.secrets },
        websocket: (secret, upgrade) => session.connect(secret, upgrade),
        run: async () => {
          await session.run(spawn);
        },
      }),
    );
  };

  const log: Handler = async (c) => {
    const log = await agent.consoles.log(c.req.param("name")!);
    return c.body(log.slice().buffer, 200, { "Content-Type": "application/octet-stream" });
  };

  return table([
    ["POST", "/1.0/instances/:name/console", "trusted", attach],
    ["GET", "/1.0/instances/:name/console", "trusted", log],
  ]);
}
