import assert from "node:assert/strict";
import type { Agent } from "../agent/agent.ts";
import type { CertificateRecord } from "../agent/store.ts";
import { type Identity, refusal } from "./access.ts";
import { isLoopback } from "../server/auth_failures.ts";
import type { Access, Method } from "./route_table.ts";

const agent = (config: Record<string, string> = {}) =>
  ({ serverConfig: () => config }) as unknown as Agent;

const cert = (over: Partial<CertificateRecord>): Identity => ({
  kind: "certificate",
  address: "10.0.0.2",
  certificate: {
    fingerprint: "ab",
    name: "c",
    type: "client",
    restricted: false,
    projects: [],
    certificate: "",
    description: "",
    ...over,
  },
});

const may = (id: Identity, access: Access, method: Method = "GET", config = {}) =>
  refusal(agent(config), id, { access, method }) === undefined;

Deno.test("refusal(): who may call each access level", () => {
  const unix: Identity = { kind: "unix" };
  const stranger: Identity = { kind: "untrusted", address: "10.0.0.3" };
  const client = cert({});
  const metrics = cert({ type: "metrics" });
  const reader = cert({ restricted: true, projects: [] });
  const member = cert({ restricted: true, projects: ["default"] });
  for (const access of ["untrusted", "secret", "metrics", "trusted", "admin"] as const) {
    assert.ok(may(unix, access, "POST"), `unix ${access}`);
    assert.ok(may(client, access, "POST"), `client ${access}`);
  }
  assert.ok(may(stranger, "untrusted") && may(stranger, "secret"));
  assert.ok(!may(stranger, "metrics") && !may(stranger, "trusted") && !may(stranger, "admin"));
  assert.ok(may(stranger, "metrics", "GET", { "core.metrics_authentication": "false" }));
  assert.ok(may(metrics, "metrics"));
  assert.ok(!may(metrics, "trusted") && !may(metrics, "admin"));
  assert.ok(may(reader, "trusted", "GET") && !may(reader, "trusted", "POST"));
  assert.ok(!may(reader, "admin") && !may(member, "admin", "GET"));
  assert.ok(may(member, "trusted", "POST") && may(member, "trusted", "DELETE"));
});

Deno.test("isLoopback() knows IPv4, IPv6 and mapped loopback addresses only", () => {
  for (const a of ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopback(a), a);
  }
  for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "1127.0.0.1", ""]) {
    assert.ok(!isLoopback(a), a);
  }
});
