/**
 * zod schemas of what the daemon answers (request bodies are in schemas.ts): the sync, async and
 * error envelopes and each API object, named after Incus's `shared/api` types. They are strict and
 * describe exactly what outpost sends: a field added to or dropped from an answer without changing
 * its schema fails api/contract_test.ts. The command line imports the types only (`import type`),
 * so it never loads zod.
 */
import { z } from "zod";
import { InstanceStateSchema, PowerStateSchema } from "./instance_state.ts";
import { CertificateTypeSchema, InstanceTypeSchema } from "./schemas.ts";

const stringMap = z.record(z.string(), z.string());
const devices = z.record(z.string(), stringMap);

// --- Operations (`/1.0/operations/{id}`, the metadata of an async answer and of its events) ---

export const OperationClassSchema = z.enum(["task", "websocket", "token"]);
export type OperationClass = z.infer<typeof OperationClassSchema>;

export const OperationStatusSchema = z.enum([
  "Operation created",
  "Running",
  "Success",
  "Failure",
  "Cancelled",
]);
export type OperationStatus = z.infer<typeof OperationStatusSchema>;

/** 100 created, 103 running, 200 success, 400 failure, 401 cancelled. */
export const OperationStatusCodeSchema = z.literal([100, 103, 200, 400, 401]);
export type OperationStatusCode = z.infer<typeof OperationStatusCodeSchema>;

export const OperationSchema = z.strictObject({
  id: z.string(),
  class: OperationClassSchema,
  description: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  status: OperationStatusSchema,
  status_code: OperationStatusCodeSchema,
  /** The URLs of what it works on, by kind (`instances`, `images`...). */
  resources: z.record(z.string(), z.array(z.string())).nullable(),
  /** What the work reports: an exec's `fds` and `return`, an upload's `fingerprint`... */
  metadata: z.record(z.string(), z.unknown()).nullable(),
  may_cancel: z.boolean(),
  err: z.string(),
  location: z.string(),
});
export type Operation = z.infer<typeof OperationSchema>;

// --- Envelopes ---

export const SyncEnvelopeSchema = z.strictObject({
  type: z.literal("sync"),
  status: z.literal("Success"),
  status_code: z.literal(200),
  operation: z.literal(""),
  error_code: z.literal(0),
  error: z.literal(""),
  metadata: z.unknown(),
});
/** A sync answer whose metadata is a `T`. */
export type SyncEnvelope<T = unknown> =
  & Omit<z.infer<typeof SyncEnvelopeSchema>, "metadata">
  & { metadata: T };

/** HTTP 202 with `Location: operation`: the operation started. */
export const AsyncEnvelopeSchema = z.strictObject({
  type: z.literal("async"),
  status: z.literal("Operation created"),
  status_code: z.literal(100),
  operation: z.string(),
  error_code: z.literal(0),
  error: z.literal(""),
  metadata: OperationSchema,
});
export type AsyncEnvelope = z.infer<typeof AsyncEnvelopeSchema>;

/** Any 4xx or 5xx: `error_code` is the HTTP status. */
export const ErrorEnvelopeSchema = z.strictObject({
  type: z.literal("error"),
  status: z.literal(""),
  status_code: z.literal(0),
  operation: z.literal(""),
  error_code: z.number(),
  error: z.string(),
  metadata: z.null(),
});
export type ErrorEnvelope = z.infer<typeof ErrorEnvelopeSchema>;

/** An error in the envelope: what every refusal looks like on the wire. */
export function errorBody(message: string, code: number): ErrorEnvelope {
  return {
    type: "error",
    status: "",
    status_code: 0,
    operation: "",
    error_code: code,
    error: message,
    metadata: null,
  };
}

export type Envelope<T = unknown> = SyncEnvelope<T> | AsyncEnvelope | ErrorEnvelope;

// --- The server (`GET /1.0`, `GET /1.0/resources`) ---

/** One instance driver as its start-up probe found it. */
export const InstanceDriverInfoSchema = z.strictObject({
  name: z.string(),
  version: z.string(),
  available: z.boolean(),
  error: z.string(),
  /** Driver-specific facts (e.g. a VM's accelerator). */
  details: stringMap.optional(),
});
export type InstanceDriverInfo = z.infer<typeof InstanceDriverInfoSchema>;

export const ServerEnvironmentSchema = z.strictObject({
  addresses: z.array(z.string()),
  architectures: z.array(z.string()),
  certificate: z.string(),
  certificate_fingerprint: z.string(),
  /** The available drivers' names, joined with " | ". */
  driver: z.string(),
  driver_version: z.string(),
  firewall: z.string(),
  kernel: z.string(),
  kernel_architecture: z.string(),
  kernel_features: stringMap,
  kernel_version: z.string(),
  os_name: z.string(),
  os_version: z.string(),
  project: z.string(),
  server: z.literal("outpost"),
  server_clustered: z.boolean(),
  server_event_mode: z.string(),
  server_name: z.string(),
  server_pid: z.number(),
  server_version: z.string(),
  storage: z.string(),
  storage_version: z.string(),
  storage_supported_drivers: z.array(
    z.strictObject({ Name: z.string(), Version: z.string(), Remote: z.boolean() }),
  ),
  /** Every driver by name, available or not, with its details (strings) as more fields. */
  instance_drivers: z.record(
    z.string(),
    z.object({ version: z.string(), available: z.boolean(), error: z.string() })
      // Typed wider than the details are, so that the known fields fit beside the index.
      .catchall(z.union([z.string(), z.boolean()])),
  ),
});
export type ServerEnvironment = z.infer<typeof ServerEnvironmentSchema>;

export const ServerSchema = z.strictObject({
  config: stringMap,
  api_extensions: z.array(z.string()),
  api_status: z.string(),
  api_version: z.literal("1.0"),
  auth: z.enum(["trusted", "untrusted"]),
  public: z.boolean(),
  auth_methods: z.array(z.string()),
  environment: ServerEnvironmentSchema,
});
export type Server = z.infer<typeof ServerSchema>;

/** `GET /1.0` as an untrusted caller sees it. */
export const UntrustedServerSchema = ServerSchema.omit({ config: true, environment: true }).extend({
  auth: z.literal("untrusted"),
});
export type UntrustedServer = z.infer<typeof UntrustedServerSchema>;

/** `GET /1.0/resources`: a small part of Incus's `Resources`, and the instance drivers. */
export const ResourcesSchema = z.strictObject({
  cpu: z.strictObject({
    architecture: z.string(),
    /** Threads. */
    total: z.number(),
    sockets: z.array(z.strictObject({ name: z.string(), cores: z.number() })),
  }),
  memory: z.strictObject({ total: z.number(), used: z.number() }),
  instance_drivers: z.array(InstanceDriverInfoSchema),
});
export type Resources = z.infer<typeof ResourcesSchema>;

// --- Instances and snapshots ---

/**
 * What an instance and each of its snapshots carry: the writable fields (Incus's `InstancePut`)
 * and the config and devices as applied.
 */
const instanceBody = {
  architecture: z.string(),
  description: z.string(),
  config: stringMap,
  devices,
  profiles: z.array(z.string()),
  ephemeral: z.boolean(),
  stateful: z.boolean(),
  expanded_config: stringMap,
  expanded_devices: devices,
};

/** `GET /1.0/instances/{name}` and each entry of `?recursion=1`. */
export const InstanceSchema = z.strictObject({
  ...instanceBody,
  name: z.string(),
  type: InstanceTypeSchema,
  status: PowerStateSchema,
  status_code: z.number(),
  created_at: z.string(),
  /** `1970-01-01T00:00:00Z` when never started. */
  last_used_at: z.string(),
  location: z.string(),
  project: z.string(),
});
export type Instance = z.infer<typeof InstanceSchema>;

/** `GET /1.0/instances/{name}/snapshots/{snap}`. Times of "never" are Go's zero time. */
export const InstanceSnapshotSchema = z.strictObject({
  ...instanceBody,
  name: z.string(),
  created_at: z.string(),
  expires_at: z.string(),
  last_used_at: z.string(),
  /** Bytes; -1 when unknown. */
  size: z.number(),
});
export type InstanceSnapshot = z.infer<typeof InstanceSnapshotSchema>;

/** An instance with its live state and snapshots: `?recursion=2` of the list, `?recursion=1`. */
export const InstanceFullSchema = InstanceSchema.extend({
  state: InstanceStateSchema,
  /** null when there are none. */
  snapshots: z.array(InstanceSnapshotSchema).nullable(),
  /** Backups are not supported yet. */
  backups: z.null(),
});
export type InstanceFull = z.infer<typeof InstanceFullSchema>;

// --- Images and aliases ---

/** An alias as an image lists it. */
export const ImageAliasSchema = z.strictObject({ name: z.string(), description: z.string() });
export type ImageAlias = z.infer<typeof ImageAliasSchema>;

/** `GET /1.0/images/{fingerprint}`. */
export const ImageSchema = z.strictObject({
  fingerprint: z.string(),
  type: InstanceTypeSchema,
  aliases: z.array(ImageAliasSchema),
  architecture: z.string(),
  filename: z.string(),
  size: z.number(),
  properties: stringMap,
  public: z.boolean(),
  auto_update: z.boolean(),
  cached: z.boolean(),
  profiles: z.array(z.string()),
  created_at: z.string(),
  uploaded_at: z.string(),
  last_used_at: z.string(),
  expires_at: z.string(),
  project: z.string(),
});
export type Image = z.infer<typeof ImageSchema>;

/** `GET /1.0/images/aliases/{name}`: an alias, the image it names and that image's type. */
export const ImageAliasesEntrySchema = ImageAliasSchema.extend({
  target: z.string(),
  type: InstanceTypeSchema,
});
export type ImageAliasesEntry = z.infer<typeof ImageAliasesEntrySchema>;

// --- Profiles ---

/** `GET /1.0/profiles/{name}`: a profile and the instances that use it. */
export const ProfileSchema = z.strictObject({
  name: z.string(),
  description: z.string(),
  config: stringMap,
  devices,
  /** Instance URLs. */
  used_by: z.array(z.string()),
  project: z.string(),
});
export type Profile = z.infer<typeof ProfileSchema>;

// --- Networks ---

/** `GET /1.0/networks/{name}`: a managed bridge. */
export const NetworkSchema = z.strictObject({
  name: z.string(),
  description: z.string(),
  type: z.string(),
  managed: z.boolean(),
  status: z.string(),
  config: stringMap,
  /** Profile and instance URLs. */
  used_by: z.array(z.string()),
  locations: z.array(z.string()),
  project: z.string(),
});
export type Network = z.infer<typeof NetworkSchema>;

/** `GET /1.0/networks/{name}/leases`: one entry each. */
export const NetworkLeaseSchema = z.strictObject({
  hostname: z.string(),
  hwaddr: z.string(),
  address: z.string(),
  type: z.enum(["static", "dynamic"]),
  location: z.string(),
  project: z.string(),
});
export type NetworkLease = z.infer<typeof NetworkLeaseSchema>;

// --- Storage ---

/** `GET /1.0/storage-pools/{name}`. */
export const StoragePoolSchema = z.strictObject({
  name: z.string(),
  description: z.string(),
  driver: z.string(),
  status: z.string(),
  config: stringMap,
  used_by: z.array(z.string()),
  locations: z.array(z.string()),
});
export type StoragePool = z.infer<typeof StoragePoolSchema>;

/** `GET /1.0/storage-pools/{name}/resources`: bytes and inodes of the pool's filesystem. */
export const StoragePoolResourcesSchema = z.strictObject({
  space: z.strictObject({ used: z.number(), total: z.number() }),
  inodes: z.strictObject({ used: z.number(), total: z.number() }),
});
export type StoragePoolResources = z.infer<typeof StoragePoolResourcesSchema>;

/** `GET /1.0/storage-pools/{name}/volumes/{type}/{volume}`. */
export const StorageVolumeSchema = z.strictObject({
  name: z.string(),
  type: z.string(),
  content_type: z.string(),
  description: z.string(),
  config: stringMap,
  used_by: z.array(z.string()),
  location: z.string(),
  project: z.string(),
  created_at: z.string(),
});
export type StorageVolume = z.infer<typeof StorageVolumeSchema>;

// --- The trust store ---

/** `GET /1.0/certificates/{fingerprint}`: a trusted certificate. */
export const CertificateSchema = z.strictObject({
  name: z.string(),
  type: CertificateTypeSchema,
  restricted: z.boolean(),
  projects: z.array(z.string()),
  /** PEM. */
  certificate: z.string(),
  /** Lowercase hex SHA-256 of the DER. */
  fingerprint: z.string(),
  description: z.string(),
});
export type Certificate = z.infer<typeof CertificateSchema>;
