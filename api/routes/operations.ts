/** `/1.0/operations*`: list, get, wait, cancel, and the websockets of websocket operations. */
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import type { Operation } from "../../contract/responses.ts";
import { operationUrl } from "../../contract/urls.ts";
import { recursion } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { connectionOf } from "../../server/connection.ts";
import { guardUpgrade } from "../websocket_upgrade.ts";
import { type Handler, type Route, table } from "../route_table.ts";

export function operationRoutes(agent: Agent): Route[] {
  const { operations } = agent;

  const list: Handler = (c) => {
    const byStatus: Record<string, (Operation | string)[]> = {};
    for (const op of operations.list()) {
      const key = op.status.toLowerCase();
      (byStatus[key] ??= []).push(recursion(c) > 0 ? op : operationUrl(op.id));
    }
    return sync(c, byStatus);
  };
  const get: Handler = (c) => sync(c, operations.get(c.req.param("id")!));
  const cancel: Handler = (c) => sync(c, operations.cancel(c.req.param("id")!));
  // Checked before the operation sees it: a broken upgrade must not use up a secret.
  const websocket: Handler = (c) =>
    guardUpgrade(
      c.req.raw,
      () =>
        operations.connect(
          c.req.param("id")!,
          c.req.query("secret") ?? "",
          () => connectionOf(c).upgradeWebSocket(c.req.raw),
        ),
    );
  const wait: Handler = async (c) => {
    const raw = c.req.query("timeout") ?? "-1";
    const timeout = Number(raw);
    if (!Number.isFinite(timeout)) throw new BadRequest(`Invalid timeout "${raw}"`);
    return sync(c, await operations.wait(c.req.param("id")!, timeout));
  };

  return table([
    ["GET", "/1.0/operations", "trusted", list],
    ["GET", "/1.0/operations/:id", "trusted", get],
    ["DELETE", "/1.0/operations/:id", "trusted", cancel],
    // The secret in the URL is the credential, as with Incus (an untrusted client may connect).
    ["GET", "/1.0/operations/:id/websocket", "secret", websocket],
    ["GET", "/1.0/operations/:id/wait", "trusted", wait],
  ]);
}
