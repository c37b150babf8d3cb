/**
 * The Hono app as the daemon serves it, on the core fixture (tests/core_fixture.ts): an Agent made
 * of the fixture's store, managers and in-memory drivers, so API tests can create, start and
 * snapshot instances without LXC or QEMU. The state dir is removed afterwards.
 */
import assert from "node:assert/strict";
import type { Hono } from "hono";
import { ErrorEnvelopeSchema } from "../contract/responses.ts";
import { Agent } from "../agent/agent.ts";
import { Host } from "../agent/host.ts";
import { InstanceSftp } from "../agent/instance_sftp.ts";
import { Metrics } from "../agent/metrics.ts";
import { Operations } from "../agent/operations.ts";
import { TrustStore } from "../agent/trust.ts";
import { AuditLog } from "../agent/audit.ts";
import { AuthFailures } from "../server/auth_failures.ts";
import { TrustTokens } from "../agent/trust_tokens.ts";
import { FleetMembershipManager } from "../agent/fleet.ts";
import { Upgrader } from "../agent/upgrade.ts";
import { NetworkManager } from "../agent/networks.ts";
import { InstanceCopier } from "../agent/instance_copy.ts";
import { Publisher } from "../agent/publish.ts";
import { StorageManager } from "../agent/storage.ts";
import { BridgeDriver } from "../drivers/network/bridge.ts";
import { join } from "node:path";
import { httpsAddresses } from "../server/addresses.ts";
import { createApp } from "../api/app.ts";
import { Runner } from "../drivers/runner.ts";
import { backupsOf, type Core, withCore } from "./core_fixture.ts";

export async function withApp(
  fn: (app: Hono, agent: Agent, core: Core) => Promise<void>,
): Promise<void> {
  await withCore(async (core) => {
    const operations = new Operations(core.events, core.store, (msg) => core.log.push(msg));
    const startedAt = new Date();
    const trust = new TrustStore(core.store, core.events);
    const agent: Agent = {
      paths: core.paths,
      store: core.store,
      events: core.events,
      runner: new Runner(),
      operations,
      images: core.images,
      drivers: core.drivers,
      instances: core.instances,
      copies: new InstanceCopier(core.store, core.instances, core.drivers, core.events),
      publisher: new Publisher(core.store, core.instances, core.images, core.drivers, core.paths),
      storage: new StorageManager({
        store: core.store,
        paths: core.paths,
        runner: new Runner(),
        events: core.events,
        profiles: core.instances.profiles,
        log: () => {},
      }),
      backups: backupsOf(core),
      profiles: core.instances.profiles,
      // Networks make real bridges: the API unit tests never create one (tests/networks_test.ts does).
      networks: new NetworkManager({
        store: core.store,
        events: core.events,
        bridge: new BridgeDriver(new Runner()),
        runner: new Runner(),
        dir: (name) => join(core.paths.root, "networks", name),
        log: (msg) => core.log.push(msg),
      }),
      networkUsers: Agent.prototype.networkUsers,
      defaultNetwork: false,
      snapshots: core.snapshots,
      consoles: core.consoles,
      sftp: new InstanceSftp(core.instances, core.drivers),
      instanceLogs: core.instanceLogs,
      host: new Host(core.drivers),
      metrics: new Metrics({
        instances: () => core.instances.list(),
        driver: (type) => core.drivers.maybe(type),
        operations: () => operations.list().length,
        startedAt,
      }),
      trust,
      tokens: new TrustTokens({
        operations,
        trust,
        fingerprint: () => "",
        addresses: () => httpsAddresses(core.store.serverConfig()["core.https_address"] ?? ""),
        expiry: () => core.store.serverConfig()["core.remote_token_expiry"] ?? "",
      }),
      fleet: new FleetMembershipManager({
        store: core.store,
        credentials: () => Promise.reject(new Error("No certificate in the fixture")),
        log: (msg) => core.log.push(msg),
      }),
      upgrader: new Upgrader({
        stateDir: core.paths.root,
        runner: new Runner(),
        record: () => undefined,
        credentials: () => Promise.reject(new Error("No certificate in the fixture")),
        log: (msg) => core.log.push(msg),
      }),
      serverConfigAppliers: [],
      audit: new AuditLog(core.paths.auditLog),
      authFailures: new AuthFailures(),
      startedAt,
      serverCert: { certificate: "", fingerprint: "" },
      log: (msg) => core.log.push(msg),
      init: () => Promise.resolve(),
      // The daemon's own server config handling, on the fixture's store and bus.
      serverConfig: Agent.prototype.serverConfig,
      setServerConfig: Agent.prototype.setServerConfig,
      // The fixture closes the store.
      close: () => operations.close(),
    };
    try {
      await fn(createApp(agent), agent, core);
    } finally {
      operations.close();
    }
  });
}

/** One request to the app: its response and its parsed JSON body. */
export async function call(
  app: Hono,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await app.request(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { res, body: await res.json() };
}

/** The error message of an answer that must be `status`, checked against the error envelope. */
export async function refused(
  app: Hono,
  method: string,
  path: string,
  body: unknown,
  status: number,
): Promise<string> {
  const { res, body: answer } = await call(app, method, path, body);
  assert.equal(res.status, status, JSON.stringify(answer));
  return ErrorEnvelopeSchema.parse(answer).error;
}
