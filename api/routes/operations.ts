/** `/1.0/operations*`: list, get, wait, cancel, and the websockets of websocket operations. */
import { Hono } from "hono";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import { recursion } from "../body.ts";
import { sync } from "../envelope.ts";
import { guardUpgrade } from "../websocket_upgrade.ts";

export function operationRoutes(agent: Agent): Hono {
  const app = new Hono();
  app.get("/1.0/operations", (c) => {
    const ops = agent.operations.list();
    const byStatus: Record<string, unknown[]> = {};
    for (const op of ops) {
      const key = op.status.toLowerCase();
      (byStatus[key] ??= []).push(recursion(c) > 0 ? op : `/1.0/operations/${op.id}`);
    }
    return sync(c, byStatus);
  });
  app.get("/1.0/operations/:id", (c) => sync(c, agent.operations.get(c.req.param("id"))));
  app.delete("/1.0/operations/:id", (c) => sync(c, agent.operations.cancel(c.req.param("id"))));
  app.get("/1.0/operations/:id/websocket", (c) =>
    // Checked before the operation sees it: a broken upgrade must not use up a secret.
    guardUpgrade(
      c.req.raw,
      () => agent.operations.connect(c.req.param("id"), c.req.query("secret") ?? "", c.req.raw),
    ));
  app.get("/1.0/operations/:id/wait", async (c) => {
    const raw = c.req.query("timeout") ?? "-1";
    const timeout = Number(raw);
    if (!Number.isFinite(timeout)) throw new BadRequest(`Invalid timeout "${raw}"`);
    return sync(c, await agent.operations.wait(c.req.param("id"), timeout));
  });
  return app;
}
