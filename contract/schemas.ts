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

/** What Incus clients send in `source` when creating an instance. */
export const InstanceSourceSchema = z.object({
  type: z.enum(["image", "none", "copy", "migration"]),
  alias: z.string().optional(),
  fingerprint: z.string().optional(),
  server: z.string().optional(),
  protocol: z.string().optional(),
  certificate: z.string().optional(),
  secret: z.string().optional(),
  mode: z.string().optional(),
  allow_inconsistent: z.boolean().optional(),
  image_type: z.string().optional(),
  properties: stringMap.optional(),
  project: z.string().optional(),
}).loose(); // copy and migration sources carry many more fields; unsupported types are refused by name

export const InstancesPostSchema = z.object({
  name: z.string({ error: "a name is required" }),
  type: z.enum(["container", "virtual-machine", ""]).default("container"),
  source: InstanceSourceSchema,
  config: stringMap.nullish().transform((v) => v ?? {}),
  devices: devices.nullish().transform((v) => v ?? {}),
  profiles: z.array(z.string()).nullish().transform((v) => v ?? []),
  description: text.default(""),
  ephemeral: z.boolean().default(false),
  stateful: z.boolean().optional(),
  architecture: z.string().optional(),
  instance_type: z.string().optional(),
  start: z.boolean().default(false),
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
  ...INSTANCE_READ_ONLY,
}).strict();

export const InstanceStatePutSchema = z.object({
  action: z.enum(["start", "stop", "restart", "freeze", "unfreeze"], {
    error: "action must be one of start, stop, restart, freeze, unfreeze",
  }),
  timeout: z.number().int().min(-1).default(-1),
  force: z.boolean().default(false),
  stateful: z.boolean().default(false),
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

/** `POST /1.0/instances/{name}`: a rename (`migration` and `live` are for moves, not supported). */
export const InstancePostSchema = z.object({
  name: z.string(),
  migration: z.boolean().default(false),
  live: z.boolean().optional(),
  instance_only: z.boolean().optional(),
  container_only: z.boolean().optional(),
  allow_inconsistent: z.boolean().optional(),
  target: z.unknown().optional(),
  pool: z.string().optional(),
  project: z.string().optional(),
}).strict();
