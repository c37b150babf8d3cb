/**
 * `GET /1.0/events`: a websocket of operation, lifecycle and logging events. Each subscriber has a
 * bounded send queue: one that stops reading is dropped (see EventBus.subscribeSink).
 */
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../contract/errors.ts";
import { EVENT_TYPES, type EventType } from "../../contract/events.ts";
import { connectionOf } from "../../server/connection.ts";
import { guardUpgrade } from "../websocket_upgrade.ts";
import { type Handler, type Route, table } from "../route_table.ts";

/**
 * The `type` query: a comma-separated list of event types, all of them when absent or empty.
 * Each entry must name a type (spaces around it are allowed): `operation,` or `operation,%0a` is
 * refused, as Incus does.
 */
export function parseEventTypes(raw: string | undefined): EventType[] {
  if (raw === undefined || raw === "") return [...EVENT_TYPES];
  const asked = raw.split(",").map((t) => t.replace(/^ +| +$/g, ""));
  const unknown = asked.find((t) => !EVENT_TYPES.includes(t as EventType));
  if (unknown !== undefined) {
    const shown = unknown.length > 40 ? `${unknown.slice(0, 40)}...` : unknown;
    throw new BadRequest(
      `Unknown event type ${JSON.stringify(shown)}: use ${EVENT_TYPES.join(", ")}`,
    );
  }
  return [...new Set(asked as EventType[])];
}

export function eventRoutes(agent: Agent): Route[] {
  let subscribers = 0;
  const events: Handler = (c) => {
    const types = parseEventTypes(c.req.query("type"));
    const { socket, response } = guardUpgrade(
      c.req.raw,
      () => connectionOf(c).upgradeWebSocket(c.req.raw),
      "The events endpoint",
    );
    const label = `#${++subscribers}, ${types.join(",")}`;
    let unsubscribe = () => {};
    socket.onopen = () => {
      unsubscribe = agent.events.subscribeSink(types, socket, { label, log: agent.log });
    };
    socket.onclose = () => unsubscribe();
    socket.onerror = () => unsubscribe();
    return response;
  };

  return table([
    ["GET", "/1.0/events", "trusted", events],
  ]);
}
