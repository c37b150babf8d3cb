/** zod schemas for API request bodies: the single source of truth for their shapes. */
import { z } from "zod";

/** The two kinds of instance. */
export const InstanceTypeSchema = z.enum(["container", "virtual-machine"]);
export type InstanceType = z.infer<typeof InstanceTypeSchema>;

/** A string that can travel in argv, a file header or a log line: no NUL byte. */
export const text = z.string().refine((v) => !v.includes("\0"), {
  error: "NUL bytes are not allowed",
});
const stringMap = z.record(z.string(), z.string());
const device = z.record(z.string(), z.string());
const devices = z.record(z.string(), device);

/**
 * Fields of a full Instance object that are read-only: clients that GET an instance, change it
 * and PUT it back send them; they are ignored. Any other unknown field is refused.
 */
const INSTANCE_READ_ONLY = {
  name: z.unknown().optional(),
  status: z.unknown().optional(),
  status_code: z.unknown().optional(),
  created_at: z.unknown().optional(),
  last_used_at: z.unknown().optional(),
  location: z.unknown().optional(),
  type: z.unknown().optional(),
  project: z.unknown().optional(),
  expanded_config: z.unknown().optional(),
  expanded_devices: z.unknown().optional(),
  state: z.unknown().optional(),
  snapshots: z.unknown().optional(),
  backups: z.unknown().optional(),
};

/**
 * A field outpost takes only at its default (Go's zero value: what a client sends when it does not
 * use the feature); any other value is a 400 saying it is not supported.
 */
function onlyDefault<T extends z.ZodType>(
  schema: T,
  isDefault: (v: z.output<T>) => boolean,
  message: string,
) {
  return schema.optional().refine((v) => v === undefined || isDefault(v as z.output<T>), {
    error: message,
  });
}
const notTrue = (message: string) => onlyDefault(z.boolean(), (v) => !v, message);
const notSet = (message: string) => onlyDefault(z.string(), (v) => v === "", message);
/** A map or list taken only when null or empty. */
const noneOf = <T extends z.ZodRecord | z.ZodArray>(schema: T, message: string) =>
  onlyDefault(
    schema.nullable(),
    (v) => v === null || Object.keys(v as object).length === 0,
    message,
  );
/** Only the default project exists. */
const project = (what: string) =>
  onlyDefault(
    z.string(),
    (v) => v === "" || v === "default",
    `${what} is not supported: only the "default" project exists`,
  );

/**
 * `source` of `POST /1.0/instances`: every field of Incus's and LXD 5.0's `InstanceSource`. Only
 * local images are supported; the other types are refused by name.
 */
export const InstanceSourceSchema = z.object({
  type: z.enum(["image", "none", "copy", "migration"]),
  // An image: by alias or fingerprint (properties select one on image servers).
  alias: z.string().optional(),
  fingerprint: z.string().optional(),
  properties: stringMap.nullish(),
  server: z.string().optional(),
  protocol: z.string().optional(),
  certificate: z.string().optional(),
  secret: z.string().optional(),
  project: project("An image or instance from another project"),
  // A copy or a migration.
  source: z.string().optional(),
  "base-image": z.string().optional(),
  mode: z.string().optional(),
  operation: z.string().optional(),
  secrets: stringMap.nullish(),
  live: z.boolean().optional(),
  instance_only: z.boolean().optional(),
  container_only: z.boolean().optional(),
  refresh: z.boolean().optional(),
  refresh_exclude_older: z.boolean().optional(),
  allow_inconsistent: z.boolean().optional(),
}).strict();

/** `POST /1.0/instances` (`InstancesPost`: the writable fields of an instance, and how to make it). */
export const InstancesPostSchema = z.object({
  name: z.string({ error: "a name is required" }),
  // Empty: a container, or the type of the legacy path used (`/1.0/virtual-machines`).
  type: z.enum(["container", "virtual-machine", ""]).default(""),
  source: InstanceSourceSchema,
  config: stringMap.nullish().transform((v) => v ?? {}),
  devices: devices.nullish().transform((v) => v ?? {}),
  // Absent or null: the "default" profile, as LXD does; an empty list: no profile at all.
  profiles: z.array(z.string()).nullish().transform((v) => v ?? undefined),
  description: text.default(""),
  ephemeral: z.boolean().default(false),
  start: z.boolean().default(false),
  // Ignored: the architecture is the image's, a new instance has no saved state.
  architecture: z.string().optional(),
  stateful: z.boolean().optional(),
  disk_only: z.boolean().optional(),
  instance_type: notSet("instance_type is not supported: set limits.cpu and limits.memory"),
  restore: notSet("restore is for an existing instance: PUT it with restore"),
}).strict();
export type InstancesPost = z.infer<typeof InstancesPostSchema>;

export const InstancePutSchema = z.object({
  config: stringMap.nullish(),
  devices: devices.nullish().transform((v) => v ?? {}),
  profiles: z.array(z.string()).nullish().transform((v) => v ?? []),
  description: text.default(""),
  ephemeral: z.boolean().optional(),
  architecture: z.string().optional(),
  stateful: z.boolean().optional(),
  restore: z.string().optional(),
  // A restore brings back the disk only in any case (snapshots are never stateful).
  disk_only: z.boolean().optional(),
  ...INSTANCE_READ_ONLY,
}).strict().refine((b) => b.restore !== undefined || b.config !== undefined, {
  // A full replacement says what to replace with: a stray `{}` cannot wipe an instance.
  error: "A PUT replaces the whole instance: send its config (or restore a snapshot)",
});
export type InstancePut = z.infer<typeof InstancePutSchema>;

export const InstancePatchSchema = z.object({
  config: stringMap.optional(),
  devices: devices.optional(),
  profiles: z.array(z.string()).optional(),
  description: text.optional(),
  ephemeral: z.boolean().optional(),
  architecture: z.string().optional(),
  stateful: z.boolean().optional(),
  restore: notSet("A PATCH cannot restore a snapshot: PUT the instance with restore"),
  disk_only: z.boolean().optional(),
  ...INSTANCE_READ_ONLY,
}).strict();

export const InstanceStatePutSchema = z.object({
  action: z.enum(["start", "stop", "restart", "freeze", "unfreeze"], {
    error: "action must be one of start, stop, restart, freeze, unfreeze",
  }),
  timeout: z.number().int().min(-1).default(-1),
  force: z.boolean().default(false),
  stateful: notTrue("Stateful stop/start is not supported"),
}).strict();

/** An exec environment variable: a POSIX name, a value without NUL. */
const envMap = z.record(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,254}$/, {
    error: "environment variable names have letters, digits and _ only",
  }),
  text,
);

export const ExecPostSchema = z.object({
  command: z.array(text).min(1, { error: "command must not be empty" }).max(4096),
  environment: envMap.nullish().transform((v) => v ?? {}),
  "wait-for-websocket": z.boolean().default(false),
  "record-output": z.boolean().default(false),
  interactive: z.boolean().default(false),
  width: z.number().int().min(0).max(65535).optional(),
  height: z.number().int().min(0).max(65535).optional(),
  user: z.number().int().min(0).max(4294967294).optional(),
  group: z.number().int().min(0).max(4294967294).optional(),
  cwd: text.refine((v) => new TextEncoder().encode(v).length <= 4095, {
    error: "cwd is longer than 4095 bytes",
  }).optional(),
}).strict();

export const ImageAliasPostSchema = z.object({
  name: z.string(),
  target: z.string(),
  description: z.string().default(""),
  type: z.string().optional(),
}).strict();

export const ImageAliasPutSchema = z.object({
  target: z.string(),
  description: z.string().default(""),
}).strict();

export const ServerPutSchema = z.object({
  config: stringMap.nullish().transform((v) => v ?? {}),
}).strict();

export const ConsolePostSchema = z.object({
  width: z.number().int().min(0).max(65535).default(0),
  height: z.number().int().min(0).max(65535).default(0),
  type: z.enum(["console", "vga"]).default("console"),
  force: z.boolean().optional(),
}).strict();

/** Where a migration goes (`InstancePostTarget`): only for moves between servers. */
const MigrationTargetSchema = z.object({
  certificate: z.string().optional(),
  operation: z.string().optional(),
  secrets: stringMap.nullish(),
}).strict();

const NO_MOVES = "Moving instances between servers is not supported yet";
/** Move overrides (`instance_move_config`); the Incus and LXD clients send them capitalised. */
const moveOverride = (field: string) =>
  `${field} overrides are for moves, which are not supported yet`;

/**
 * `POST /1.0/instances/{name}`: a rename (`InstancePost` of Incus 6 and LXD 5.0). The fields of a
 * move are taken at their defaults; a move itself is refused, naming the field that asks for it.
 */
export const InstancePostSchema = z.object({
  name: z.string(),
  migration: notTrue(NO_MOVES),
  live: notTrue("Live migration is not supported"),
  target: onlyDefault(MigrationTargetSchema.nullable(), (v) => v === null, NO_MOVES),
  pool: notSet("Moving instances between storage pools is not supported"),
  project: project("Moving instances between projects"),
  // Options of a migration, meaningless without one.
  instance_only: z.boolean().optional(),
  container_only: z.boolean().optional(),
  allow_inconsistent: z.boolean().optional(),
  refresh: z.boolean().optional(),
  override_snapshot_profiles: z.boolean().optional(),
  Config: noneOf(stringMap, moveOverride("Config")),
  Devices: noneOf(devices, moveOverride("Devices")),
  Profiles: noneOf(z.array(z.string()), moveOverride("Profiles")),
  config: noneOf(stringMap, moveOverride("Config")),
  devices: noneOf(devices, moveOverride("Devices")),
  profiles: noneOf(z.array(z.string()), moveOverride("Profiles")),
}).strict();

const expiresAt = z.string().nullish();

/** `POST /1.0/instances/{name}/snapshots` (`InstanceSnapshotsPost`). */
export const SnapshotsPostSchema = z.object({
  name: z.string().default(""),
  stateful: z.boolean().default(false),
  expires_at: expiresAt,
}).strict();

/** `POST /1.0/instances/{name}/snapshots/{snap}`: a rename (`InstanceSnapshotPost`). */
export const SnapshotPostSchema = z.object({
  name: z.string({ error: "a new name is required" }),
  migration: notTrue("Snapshot migration is not supported"),
  live: z.boolean().optional(),
  target: onlyDefault(
    MigrationTargetSchema.nullable(),
    (v) => v === null,
    "Snapshot migration is not supported",
  ),
}).strict();

/**
 * `PUT/PATCH /1.0/instances/{name}/snapshots/{snap}` (`InstanceSnapshotPut`, plus description).
 * The read-only fields of a full snapshot object, which clients send back, are ignored; any other
 * field is refused.
 */
export const SnapshotPutSchema = z.object({
  expires_at: expiresAt,
  description: z.string().optional(),
  ...Object.fromEntries(
    [
      "name",
      "created_at",
      "last_used_at",
      "architecture",
      "config",
      "devices",
      "ephemeral",
      "profiles",
      "stateful",
      "size",
      "expanded_config",
      "expanded_devices",
    ].map((k) => [k, z.unknown().optional()]),
  ),
}).strict();

const ImageAliasSchema = z.object({ name: z.string(), description: z.string().optional() })
  .strict();

/**
 * A JSON `POST /1.0/images` (`ImagesPost`, with `ImagePut` and `ImagesPostSource`): an image made
 * from an instance, a server or a URL. Checked, then refused: only uploads are supported yet.
 */
export const ImagesPostSchema = z.object({
  filename: z.string().optional(),
  source: z.object({
    type: z.string().optional(),
    mode: z.string().optional(),
    name: z.string().optional(),
    fingerprint: z.string().optional(),
    alias: z.string().optional(),
    server: z.string().optional(),
    protocol: z.string().optional(),
    certificate: z.string().optional(),
    image_type: z.string().optional(),
    url: z.string().optional(),
    secret: z.string().optional(),
    project: z.string().optional(),
  }).strict().nullish(),
  compression_algorithm: z.string().optional(),
  format: z.string().optional(),
  aliases: z.array(ImageAliasSchema).nullish(),
  auto_update: z.boolean().optional(),
  properties: stringMap.nullish(),
  public: z.boolean().optional(),
  expires_at: z.string().optional(),
  profiles: z.array(z.string()).nullish(),
}).strict();

// --- The trust store (`/1.0/certificates`) ---

/** What a trusted certificate may do: everything (`client`) or read `/1.0/metrics` only. */
export const CertificateTypeSchema = z.enum(["client", "metrics"]);
export type CertificateType = z.infer<typeof CertificateTypeSchema>;

/** A restricted certificate's projects: only "default" exists. */
const certificateProjects = z.array(z.string()).nullable().transform((v) => v ?? []).refine(
  (v) => v.every((p) => p === "default"),
  { error: 'Only the "default" project exists' },
);

/** The writable fields of a certificate (`CertificatePut`), each optional (a PATCH). */
const CERTIFICATE_FIELDS = {
  name: text.max(255).optional(),
  type: CertificateTypeSchema.optional(),
  restricted: z.boolean().optional(),
  projects: certificateProjects.optional(),
  /** PEM or base64 DER; on a PUT or PATCH only the certificate already stored is taken. */
  certificate: z.string().optional(),
  description: text.max(4096).optional(),
};

/**
 * `PATCH /1.0/certificates/{fingerprint}`: the fields sent change. The read-only `fingerprint`
 * of a full Certificate object, which clients send back, is ignored.
 */
export const CertificatePatchSchema = z.object({
  ...CERTIFICATE_FIELDS,
  fingerprint: z.unknown().optional(),
}).strict();
export type CertificatePatch = z.infer<typeof CertificatePatchSchema>;

/** `PUT /1.0/certificates/{fingerprint}`: every field replaced, an absent one by its zero value. */
export const CertificatePutSchema = CertificatePatchSchema.extend({
  name: CERTIFICATE_FIELDS.name.default(""),
  type: CERTIFICATE_FIELDS.type.default("client"),
  restricted: CERTIFICATE_FIELDS.restricted.default(false),
  projects: CERTIFICATE_FIELDS.projects.default([]),
  description: CERTIFICATE_FIELDS.description.default(""),
}).strict();

/** Real certificates are a few KiB; 1000 trusted ones of a whole request body each would not be. */
export const MAX_CERTIFICATE_TEXT = 64 * 1024;

/** A trust token as a client sends it back (base64 JSON of a few hundred bytes). */
const sentToken = z.string().max(16 * 1024, { error: "A trust token is at most 16 KiB" });

/**
 * `POST /1.0/certificates` (`CertificatesPost`): a certificate to trust, as base64 DER (what the
 * clients send) or PEM, or the caller's own TLS certificate when none is sent; `token: true` asks
 * for a trust token instead; `trust_token` (Incus) or `password` (LXD 5.0, holding a token)
 * redeems one.
 */
export const CertificatesPostSchema = CertificatePutSchema.omit({ fingerprint: true }).extend({
  // LXD 5.0's `lxc remote add` sends an empty type: a client certificate, as Incus reads it.
  type: z.preprocess((v) => v === "" ? undefined : v, CERTIFICATE_FIELDS.type.default("client")),
  certificate: z.string().max(MAX_CERTIFICATE_TEXT, {
    error: `A certificate is at most ${MAX_CERTIFICATE_TEXT / 1024} KiB`,
  }).default(""),
  token: z.boolean().default(false),
  trust_token: sentToken.optional(),
  password: sentToken.optional(),
}).strict();
export type CertificatesPost = z.infer<typeof CertificatesPostSchema>;

// --- Profiles ---

/** The writable fields of a profile (`ProfilePut`); a full Profile sent back has the rest too. */
const PROFILE_FIELDS = {
  config: stringMap.nullish().transform((v) => v ?? {}),
  devices: devices.nullish().transform((v) => v ?? {}),
  description: text.max(4096).default(""),
};
const PROFILE_READ_ONLY = {
  name: z.unknown().optional(),
  used_by: z.unknown().optional(),
  project: z.unknown().optional(),
};

/** `POST /1.0/profiles` (`ProfilesPost`). */
export const ProfilesPostSchema = z.object({
  name: z.string({ error: "a name is required" }),
  ...PROFILE_FIELDS,
  project: project("A profile in another project"),
}).strict();
export type ProfilesPost = z.infer<typeof ProfilesPostSchema>;

/** `PUT /1.0/profiles/{name}`: every writable field replaced (absent ones by their zero value). */
export const ProfilePutSchema = z.object({ ...PROFILE_FIELDS, ...PROFILE_READ_ONLY }).strict();
export type ProfilePut = z.infer<typeof ProfilePutSchema>;

/** `PATCH /1.0/profiles/{name}`: config keys and devices merged, the description if sent. */
export const ProfilePatchSchema = z.object({
  config: stringMap.optional(),
  devices: devices.optional(),
  description: text.max(4096).optional(),
  ...PROFILE_READ_ONLY,
}).strict();
export type ProfilePatch = z.infer<typeof ProfilePatchSchema>;

/** `POST /1.0/profiles/{name}`: a rename. */
export const ProfilePostSchema = z.object({ name: z.string({ error: "a new name is required" }) })
  .strict();

// --- Networks ---

/** `POST /1.0/networks` (`NetworksPost`): a managed bridge. */
export const NetworksPostSchema = z.object({
  name: z.string({ error: "a name is required" }),
  description: text.max(4096).default(""),
  // Empty: a bridge, as Incus reads it.
  type: z.string().default(""),
  config: stringMap.nullish().transform((v) => v ?? {}),
  project: project("A network in another project"),
}).strict();
export type NetworksPost = z.infer<typeof NetworksPostSchema>;

/** The read-only fields of a full Network object, which clients send back (ignored). */
const NETWORK_READ_ONLY = {
  name: z.unknown().optional(),
  type: z.unknown().optional(),
  managed: z.unknown().optional(),
  status: z.unknown().optional(),
  used_by: z.unknown().optional(),
  locations: z.unknown().optional(),
  project: z.unknown().optional(),
};

/** `PUT /1.0/networks/{name}` (`NetworkPut`): config and description replaced. */
export const NetworkPutSchema = z.object({
  config: stringMap.nullish().transform((v) => v ?? {}),
  description: text.max(4096).default(""),
  ...NETWORK_READ_ONLY,
}).strict();

/** `PATCH /1.0/networks/{name}`: config keys merged, the description if sent. */
export const NetworkPatchSchema = z.object({
  config: stringMap.optional(),
  description: text.max(4096).optional(),
  ...NETWORK_READ_ONLY,
}).strict();

/** `POST /1.0/networks/{name}` (`NetworkPost`): a rename. */
export const NetworkPostSchema = z.object({
  name: z.string({ error: "the new name is required" }),
}).strict();

// --- Storage ---

/** `POST /1.0/storage-pools` (`StoragePoolsPost`). */
export const StoragePoolsPostSchema = z.object({
  name: z.string({ error: "a name is required" }),
  driver: z.string({ error: "a driver is required (dir or btrfs)" }),
  description: text.max(4096).default(""),
  config: stringMap.nullish().transform((v) => v ?? {}),
}).strict();

/** The read-only fields of a full StoragePool or StorageVolume object (ignored when sent back). */
const STORAGE_READ_ONLY = {
  name: z.unknown().optional(),
  driver: z.unknown().optional(),
  status: z.unknown().optional(),
  used_by: z.unknown().optional(),
  locations: z.unknown().optional(),
  location: z.unknown().optional(),
  type: z.unknown().optional(),
  content_type: z.unknown().optional(),
  project: z.unknown().optional(),
  created_at: z.unknown().optional(),
};

/** `PUT` and `PATCH` of a pool or a custom volume: its description (its config cannot change). */
export const StoragePutSchema = z.object({
  config: stringMap.nullish().transform((v) => v ?? undefined),
  description: text.max(4096).optional(),
  ...STORAGE_READ_ONLY,
}).strict();

/** `POST /1.0/storage-pools/{pool}/volumes[/custom]` (`StorageVolumesPost`). */
export const StorageVolumesPostSchema = z.object({
  name: z.string({ error: "a name is required" }),
  type: z.string().default("custom"),
  content_type: z.string().default("filesystem"),
  description: text.max(4096).default(""),
  config: stringMap.nullish().transform((v) => v ?? {}),
  source: z.object({ type: z.string().optional() }).passthrough().optional().refine(
    (v) => v === undefined || !v.type || v.type === "none",
    { error: "Copying or migrating volumes is not supported yet" },
  ),
  project: project("A volume in another project"),
}).strict();

// --- Backups ---

/** `POST /1.0/instances/{name}/backups/{backup}` (`InstanceBackupPost`): a rename. */
export const BackupPostSchema = z.object({
  name: z.string({ error: "the new name is required" }),
}).strict();

/** `POST /1.0/instances/{name}/backups` (`InstanceBackupsPost`). */
export const InstanceBackupsPostSchema = z.object({
  name: z.string().default(""),
  expires_at: z.string().nullish(),
  instance_only: z.boolean().default(false),
  container_only: z.boolean().default(false),
  optimized_storage: notTrue(
    "Optimized backups are not supported: the dir pool has no format of its own",
  ),
  compression_algorithm: onlyDefault(
    z.string(),
    (v) => v === "" || v === "gzip",
    "Only gzip backups are supported",
  ),
}).strict();
