/** `GET /`, `GET/PUT/PATCH /1.0`, `GET /1.0/resources`: server info, config and resources. */
import type { Agent } from "../../agent/agent.ts";
import { VERSION } from "../../contract/version.ts";
import { parseBody } from "../../server/body.ts";
import { sync } from "../../server/envelope.ts";
import { ServerPutSchema } from "../../contract/schemas.ts";
import type { Resources, Server, UntrustedServer } from "../../contract/responses.ts";
import { identityOf, isTrustedClient } from "../access.ts";
import { httpsAddresses } from "../../server/addresses.ts";
import { type Handler, type Route, table } from "../route_table.ts";

/** Exactly the API extensions outpost implements. */
export const API_EXTENSIONS = [
  "etag",
  "patch",
  "container_last_used_at",
  "container_exec_recording",
  "container_exec_user_group_cwd",
  "container_cpu_time",
  "operation_description",
  "event_lifecycle",
  "entity_description",
  "id_map",
  "instances",
  "image_types",
  "api_filtering",
  "container_full",
  "container_backup",
  "console",
  "directory_manipulation",
  "file_delete",
  "file_append",
  "file_symlinks",
  "instance_file_head",
  "snapshot_expiry",
  "snapshot_expiry_creation",
  "container_exec_signal_handling",
  // POST /1.0/instances takes `start: true` (clients that do not see it start the instance again).
  "instance_create_start",
  // GET /1.0/metrics (running containers, and VMs as their QEMU process shows them).
  "metrics",
  // PUT/PATCH /1.0/certificates/{fingerprint} (`lxc config trust edit` needs it).
  "certificate_update",
  // POST /1.0/certificates {"token": true} and redeeming a token (`lxc remote add NAME TOKEN`).
  "certificate_token",
  // /1.0/networks (managed bridges), their leases, and nic devices naming a network.
  "network",
  "network_leases",
  "instance_nic_network",
  // /1.0/storage-pools: the default dir pool, its resources and volumes (read only yet).
  "storage",
];

export function serverRoutes(agent: Agent): Route[] {
  const info = (): Server => {
    const host = agent.host.info();
    const drivers = host.drivers.filter((d) => d.available);
    const cert = agent.serverCert;
    return {
      config: agent.serverConfig(),
      api_extensions: API_EXTENSIONS,
      api_status: "stable",
      api_version: "1.0",
      auth: "trusted",
      public: false,
      auth_methods: ["tls"],
      environment: {
        addresses: httpsAddresses(agent.serverConfig()["core.https_address"] ?? ""),
        architectures: host.architectures,
        certificate: cert.certificate,
        certificate_fingerprint: cert.fingerprint,
        driver: drivers.map((d) => d.name).join(" | "),
        driver_version: drivers.map((d) => d.version).join(" | "),
        firewall: "",
        kernel: "Linux",
        kernel_architecture: host.architectures[0],
        kernel_features: {},
        kernel_version: host.kernelVersion,
        os_name: host.os.name,
        os_version: host.os.version,
        project: "default",
        server: "outpost",
        server_clustered: false,
        server_event_mode: "full-mesh",
        server_name: host.hostname,
        server_pid: Deno.pid,
        server_version: VERSION,
        storage: "dir",
        storage_version: "1",
        storage_supported_drivers: [{ Name: "dir", Version: "1", Remote: false }],
        instance_drivers: Object.fromEntries(
          host.drivers.map((d) => [d.name, {
            version: d.version,
            available: d.available,
            error: d.error,
            ...d.details,
          }]),
        ),
      },
    };
  };
  const resources = (): Resources => {
    const host = agent.host.resources();
    return {
      cpu: {
        architecture: host.architecture,
        total: host.cpu.total,
        sockets: [{ name: host.cpu.model, cores: host.cpu.cores }],
      },
      memory: host.memory,
      instance_drivers: host.drivers,
    };
  };

  const getRoot: Handler = (c) => sync(c, ["/1.0"]);
  // An untrusted caller learns what the server speaks and that it is not trusted; no more.
  const getInfo: Handler = (c) => {
    if (isTrustedClient(identityOf(agent, c))) return sync(c, info());
    const untrusted: UntrustedServer = {
      api_extensions: API_EXTENSIONS,
      api_status: "stable",
      api_version: "1.0",
      auth: "untrusted",
      public: false,
      auth_methods: ["tls"],
    };
    return sync(c, untrusted);
  };
  const putConfig: Handler = async (c) => {
    await agent.setServerConfig((await parseBody(c, ServerPutSchema)).config);
    return sync(c, {});
  };
  const patchConfig: Handler = async (c) => {
    const { config } = await parseBody(c, ServerPutSchema);
    await agent.setServerConfig({ ...agent.serverConfig(), ...config });
    return sync(c, {});
  };
  const getResources: Handler = (c) => sync(c, resources());

  return table([
    ["GET", "/", "untrusted", getRoot],
    ["GET", "/1.0", "untrusted", getInfo],
    ["PUT", "/1.0", "admin", putConfig],
    ["PATCH", "/1.0", "admin", patchConfig],
    ["GET", "/1.0/resources", "trusted", getResources],
  ]);
}
