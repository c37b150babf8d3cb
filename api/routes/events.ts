/** `GET /1.0/events`: a websocket of operation, lifecycle and logging events. */
import { Hono } from "hono";
import type { Agent } from "../../agent/agent.ts";
import { BadRequest } from "../../agent/errors.ts";
import type { EventType } from "../../agent/events.ts";

const TYPES: EventType[] = ["operation", "lifecycle", "logging"];

export function eventRoutes(agent: Agent): Hono {
  const app = new Hono();
  app.get("/1.0/events", (c) => {
    const asked = (c.req.query("type") ?? "").split(",").map((t) => t.trim()).filter(Boolean);
    const unknown = asked.find((t) => !TYPES.includes(t as EventType));
    if (unknown) throw new BadRequest(`Unknown event type "${unknown}": use ${TYPES.join(", ")}`);
    if ((c.req.header("upgrade") ?? "").toLowerCase() !== "websocket") {
      throw new BadRequest("The events endpoint needs a websocket upgrade");
    }
    const types = asked.length > 0 ? (asked as EventType[]) : TYPES;
    const { socket, response } = Deno.upgradeWebSocket(c.req.raw, { idleTimeout: 0 });
    let unsubscribe = () => {};
    socket.onopen = () => {
      unsubscribe = agent.events.subscribe(types, (event) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(event));
      });
    };
    socket.onclose = () => unsubscribe();
    socket.onerror = () => unsubscribe();
    return response;
  });
  return app;
}
