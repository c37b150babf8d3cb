/** `GET /1.0/metrics`: instance and daemon metrics in the Prometheus text format, as Incus. */
import type { Agent } from "../../agent/agent.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../../contract/metrics.ts";
import { type Handler, type Route, table } from "../route_table.ts";

export function metricsRoutes(agent: Agent): Route[] {
  const get: Handler = async (c) =>
    c.body(await agent.metrics.text(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
  return table([["GET", "/1.0/metrics", "metrics", get]]);
}
