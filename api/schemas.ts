/** zod schemas for API request bodies: the single source of truth for their shapes. */
import { z } from "zod";

const stringMap = z.record(z.string(), z.string());
const device = z.record(z.string(), z.string());
const devices = z.record(z.string(), device);

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
  description: z.string().default(""),
  ephemeral: z.boolean().default(false),
  stateful: z.boolean().optional(),
  architecture: z.string().optional(),
  instance_type: z.string().optional(),
  start: z.boolean().default(false),
}).strict();
export type InstancesPost = z.infer<typeof InstancesPostSchema>;

export const InstancePutSchema = z.object({
  config: stringMap.nullish().transform((v) => v ?? {}),
  devices: devices.nullish().transform((v) => v ?? {}),
  profiles: z.array(z.string()).nullish().transform((v) => v ?? []),
  description: z.string().default(""),
  ephemeral: z.boolean().optional(),
  architecture: z.string().optional(),
  stateful: z.boolean().optional(),
  restore: z.string().optional(),
}).loose();
export type InstancePut = z.infer<typeof InstancePutSchema>;

export const InstancePatchSchema = z.object({
  config: stringMap.optional(),
  devices: devices.optional(),
  profiles: z.array(z.string()).optional(),
  description: z.string().optional(),
  ephemeral: z.boolean().optional(),
}).loose();

export const InstanceStatePutSchema = z.object({
  action: z.enum(["start", "stop", "restart", "freeze", "unfreeze"], {
    error: "action must be one of start, stop, restart, freeze, unfreeze",
  }),
  timeout: z.number().int().min(-1).default(-1),
  force: z.boolean().default(false),
  stateful: z.boolean().default(false),
}).strict();

export const ExecPostSchema = z.object({
  command: z.array(z.string()).min(1, { error: "command must not be empty" }),
  environment: stringMap.nullish().transform((v) => v ?? {}),
  "wait-for-websocket": z.boolean().default(false),
  "record-output": z.boolean().default(false),
  interactive: z.boolean().default(false),
  width: z.number().int().optional(),
  height: z.number().int().optional(),
  user: z.number().int().min(0).optional(),
  group: z.number().int().min(0).optional(),
  cwd: z.string().optional(),
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
}).loose();

export const ConsolePostSchema = z.object({
  width: z.number().int().min(0).default(0),
  height: z.number().int().min(0).default(0),
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
