/**
 * `/1.0/fleet` (outpost's own, not Incus's): this host's enrollment with a hub. `POST` enrolls
 * with a join token, `GET` shows the membership and the tunnel, `DELETE` leaves; the hub's
 * `POST /1.0/fleet/upgrade` installs the build it names (fetched from the hub, checked).
 */
import type { Agent } from "../../agent/agent.ts";
import { FleetJoinSchema, FleetUpgradeSchema } from "../../contract/fleet.ts";
import { parseBody } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { type Handler, type Route, table } from "../route_table.ts";

export function fleetRoutes(agent: Agent): Route[] {
  const get: Handler = (c) => sync(c, agent.fleet.view());
  const join: Handler = async (c) => {
    const body = await parseBody(c, FleetJoinSchema, { requireBody: true });
    return sync(c, await agent.fleet.enroll(body));
  };
  const leave: Handler = (c) => {
    agent.fleet.leave();
    return sync(c, agent.fleet.view());
  };
  const upgrade: Handler = async (c) => {
    const body = await parseBody(c, FleetUpgradeSchema, { requireBody: true });
    return sync(c, await agent.upgrader.start(body.sha256), { status: 202 });
  };
  return table([
    ["GET", "/1.0/fleet", "trusted", get],
    ["POST", "/1.0/fleet", "admin", join],
    ["DELETE", "/1.0/fleet", "admin", leave],
    ["POST", "/1.0/fleet/upgrade", "admin", upgrade],
  ]);
}
