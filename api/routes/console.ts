/**
 * `/1.0/instances/{name}/console`: POST attaches a websocket session to the console (fds `0` and
 * `control`, resizes through `window-resize`); GET returns the console log kept since start.
 */
import type { Agent } from "../../agent/agent.ts";
import { BadRequest, InvalidState } from "../../contract/errors.ts";
import { ExecSession } from "../../agent/exec_session.ts";
import { parseBody } from "../body.ts";
import { async } from "../envelope.ts";
import { ConsolePostSchema } from "../../contract/schemas.ts";
import { type Handler, type Route, table } from "../route_table.ts";
import { resources } from "./instances.ts";

export function consoleRoutes(agent: Agent): Route[] {
  const attach: Handler = async (c) => {
    const name = c.req.param("name")!;
    const body = await parseBody(c, ConsolePostSchema);
    const inst = agent.instances.get(name);
    if (body.type === "vga") throw new BadRequest("VGA consoles are only for virtual machines");
    const driver = agent.drivers.get(inst.type);
    if (!driver.console) throw new BadRequest(`Instance "${name}" has no console`);
    if ((await driver.status(inst)) !== "Running") {
      throw new InvalidState(`Instance "${name}" is not running`);
    }
    const session = new ExecSession(true, true);
    return async(
      c,
      agent.operations.start({
        description: "Showing console",
        class: "websocket",
        resources: resources(name),
        metadata: { fds: session.secrets },
        websocket: (secret, req) => session.connect(secret, req),
        run: async () => {
          await session.run(() =>
            driver.console!(inst, { width: body.width, height: body.height })
          );
        },
      }),
    );
  };

  const log: Handler = async (c) => {
    const name = c.req.param("name")!;
    const inst = agent.instances.get(name);
    const driver = agent.drivers.get(inst.type);
    if (!driver.consoleLog) throw new BadRequest(`Instance "${name}" has no console log`);
    const log = await driver.consoleLog(inst);
    return c.body(log.slice().buffer, 200, { "Content-Type": "application/octet-stream" });
  };

  return table([
    ["POST", "/1.0/instances/:name/console", "trusted", attach],
    ["GET", "/1.0/instances/:name/console", "trusted", log],
  ]);
}
