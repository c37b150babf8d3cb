/**
 * The fleet's wire: join tokens, enrollment, the tunnel's control messages and the hub's API
 * objects (`/fleet/v1/...`), shared by the hub, the agent and the command line.
 */
import { z } from "zod";

import { FLEET_API } from "./urls.ts";

export { FLEET_API };
/** Where an agent exchanges a join token for its place in the fleet. */
export const ENROLL_PATH = `${FLEET_API}/enroll`;

// --- join tokens ---

/** What a join token carries: where the hub is, how to know it, the secret, the expiry. */
export const JoinTokenSchema = z.strictObject({
  /** The hub's URLs (`https://HOST:PORT`), tried in order. */
  hub: z.array(z.url()).min(1).max(16),
  /** The hub certificate's sha256 (lowercase hex): pinned at first contact. */
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  secret: z.string().regex(/^[0-9a-f]{64}$/),
  /** RFC 3339; empty: never. */
  expires_at: z.string(),
});
export type JoinToken = z.infer<typeof JoinTokenSchema>;

/** A join token as text: URL-safe base64 of its JSON, prefixed so it is recognised. */
export function encodeJoinToken(token: JoinToken): string {
  const bytes = new TextEncoder().encode(JSON.stringify(token));
  const b64 = btoa(String.fromCharCode(...bytes));
  return `outpost-join.${b64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "")}`;
}

/** The token in `text`; a malformed one throws a one-line error. */
export function decodeJoinToken(text: string): JoinToken {
  const body = text.trim().replace(/^outpost-join\./, "");
  let value: unknown;
  try {
    const b64 = body.replaceAll("-", "+").replaceAll("_", "/");
    const bin = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="));
    value = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(bin, (c) => c.charCodeAt(0)),
      ),
    );
  } catch {
    throw new Error("Invalid join token: not a token printed by `outpost hub token create`");
  }
  const r = JoinTokenSchema.safeParse(value);
  if (!r.success) throw new Error("Invalid join token: its fields are malformed");
  return r.data;
}

/** Labels: `key=value` pairs to select hosts by (`--label site=paris`). */
export const LabelsSchema = z.record(
  z.string().regex(
    /^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,62}$/,
    "a label key is 1-63 letters, digits, . _ / -",
  ),
  // deno-lint-ignore no-control-regex
  z.string().max(253).regex(/^[^\u0000-\u001f\u007f]*$/, "no control characters"),
).refine((l) => Object.keys(l).length <= 32, "at most 32 labels");
export type Labels = z.infer<typeof LabelsSchema>;

/** `k=v` words into labels; a word without `=` throws. */
export function parseLabels(words: string[]): Labels {
  const out: Labels = {};
  for (const w of words) {
    const i = w.indexOf("=");
    if (i <= 0) throw new Error(`Invalid label "${w}": use KEY=VALUE`);
    out[w.slice(0, i)] = w.slice(i + 1);
  }
  return LabelsSchema.parse(out);
}

/** Whether `labels` hold every pair of `selector`. */
export function matchesLabels(labels: Labels, selector: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** `POST /fleet/v1/tokens`: a join token. */
export const TokenCreateSchema = z.strictObject({
  /** How long it is valid (`30m`, `1h`, `7d`...; empty: never). */
  expires: z.string().max(32).default("1h"),
  /** How many hosts may join with it. */
  uses: z.number().int().min(1).max(10_000).default(1),
  labels: LabelsSchema.default({}),
  description: z.string().max(256).default(""),
});
export type TokenCreate = z.input<typeof TokenCreateSchema>;

export const TokenSchema = z.strictObject({
  id: z.string(),
  description: z.string(),
  labels: LabelsSchema,
  uses_left: z.number(),
  expires_at: z.string(),
  created_at: z.string(),
});
export type Token = z.infer<typeof TokenSchema>;

/** The answer to a token's creation: the token itself is shown this once (the hub keeps a hash). */
export const CreatedTokenSchema = TokenSchema.extend({
  token: z.string(),
  /** The one line that installs, starts and enrolls outpost on a fresh host. */
  install_command: z.string(),
});
export type CreatedToken = z.infer<typeof CreatedTokenSchema>;

// --- enrollment ---

/** A host name in the fleet: an RFC 1123 label, like an instance name. */
export const HostNameSchema = z.string().regex(
  /^[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/,
  "a host name is 1-63 letters, digits or -, starting with a letter",
);

/** `POST /fleet/v1/enroll`, over TLS with the agent's certificate (its credential from now on). */
export const EnrollRequestSchema = z.strictObject({
  secret: z.string().regex(/^[0-9a-f]{64}$/),
  name: HostNameSchema,
  version: z.string().max(64),
});
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

export const EnrollResponseSchema = z.strictObject({
  name: HostNameSchema,
  labels: LabelsSchema,
});
export type EnrollResponse = z.infer<typeof EnrollResponseSchema>;

// --- what an agent reports ---

export const InventoryInstanceSchema = z.strictObject({
  name: z.string().max(63),
  type: z.string().max(32),
  status: z.string().max(32),
  addresses: z.array(z.string().max(64)).max(64),
});

/** How the last upgrade from the hub ended (`upgraded`, or `rolled-back` with why). */
export const UpgradeResultSchema = z.strictObject({
  result: z.enum(["upgraded", "rolled-back"]),
  from: z.string().max(64),
  to: z.string().max(64),
  at: z.string().max(64),
  message: z.string().max(512),
});
export type UpgradeResult = z.infer<typeof UpgradeResultSchema>;

export const InventorySchema = z.strictObject({
  version: z.string().max(64),
  /** The sha256 of the agent program it was installed from ("" for a source checkout). */
  build: z.string().max(64),
  /** Whether it was installed by install.sh, and so can be upgraded from the hub. */
  upgradable: z.boolean(),
  last_upgrade: UpgradeResultSchema.nullable(),
  kernel: z.string().max(128),
  architecture: z.string().max(32),
  hostname: z.string().max(253),
  cpus: z.number().int().min(0),
  memory_bytes: z.number().int().min(0),
  kvm: z.boolean(),
  drivers: z.array(z.strictObject({
    name: z.string().max(32),
    version: z.string().max(64),
    available: z.boolean(),
  })).max(8),
  instances: z.array(InventoryInstanceSchema).max(10_000),
});
export type Inventory = z.infer<typeof InventorySchema>;

/** Past its last message plus this much more than two heartbeats, either end of a tunnel counts the other as gone. */
export const GRACE_MS = 5_000;

/** How long a host may stay silent before it is offline, for a heartbeat of `seconds`. */
export function silenceBound(seconds: number): number {
  return 2 * seconds * 1000 + GRACE_MS;
}

/** Control messages an agent sends up its tunnel. */
export const AgentMessageSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("hello"),
    protocol: z.number().int(),
    inventory: InventorySchema,
  }),
  z.strictObject({ type: z.literal("heartbeat"), inventory: InventorySchema.optional() }),
  z.strictObject({
    type: z.literal("events"),
    events: z.array(z.unknown()).max(1_000),
    /** Events dropped while the hub was away (the queue is bounded). */
    dropped: z.number().int().min(0),
  }),
]);
export type AgentMessage = z.infer<typeof AgentMessageSchema>;

/** Control messages the hub sends down a tunnel. */
export const HubMessageSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("welcome"),
    name: HostNameSchema,
    /** How often the agent sends a heartbeat (the hub sends its own as often). */
    heartbeat_seconds: z.number().positive(),
  }),
  z.strictObject({ type: z.literal("heartbeat") }),
]);
export type HubMessage = z.infer<typeof HubMessageSchema>;

// --- the hub's view of its hosts ---

export const HostStatusSchema = z.enum(["online", "offline"]);

export const FleetHostSchema = z.strictObject({
  name: HostNameSchema,
  status: HostStatusSchema,
  labels: LabelsSchema,
  fingerprint: z.string(),
  enrolled_at: z.string(),
  /** When the host last spoke to a hub (empty: never). */
  last_seen: z.string(),
  /** The hub process holding the host's tunnel (empty while offline). */
  hub: z.string(),
  inventory: InventorySchema.nullable(),
});
export type FleetHost = z.infer<typeof FleetHostSchema>;

// --- upgrades ---

/** `POST /1.0/fleet/upgrade` on a host (the hub's call): fetch this build from the hub, install it. */
export const FleetUpgradeSchema = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

/** `POST /fleet/v1/upgrade` on the hub: upgrade the hosts with these labels (all when none). */
export const FleetUpgradeRequestSchema = z.strictObject({
  labels: LabelsSchema.default({}),
});

/** What the hub says of each host it asked to upgrade. */
export const UpgradeStartSchema = z.strictObject({
  host: z.string(),
  /** `started`, `current` (already on this build), or `failed`. */
  status: z.enum(["started", "current", "failed"]),
  message: z.string(),
});
export type UpgradeStart = z.infer<typeof UpgradeStartSchema>;

// --- the agent's side (`/1.0/fleet` on an agent, outpost's own) ---

/** `POST /1.0/fleet`: enroll this host with a hub. */
export const FleetJoinSchema = z.strictObject({
  token: z.string().min(1).max(8192),
  /** The hub's URL as this host reaches it, tried before the token's. */
  url: z.url().max(2048).optional(),
  /** The host's name in the fleet (default: its host name). */
  name: HostNameSchema.optional(),
});
export type FleetJoin = z.infer<typeof FleetJoinSchema>;

/** `GET /1.0/fleet`: whether and where this host is enrolled, and how its tunnel fares. */
export const FleetMembershipSchema = z.strictObject({
  enrolled: z.boolean(),
  name: z.string(),
  hub: z.array(z.string()),
  labels: LabelsSchema,
  enrolled_at: z.string(),
  /** `connected`, `connecting` (backing off between tries), or `none` when not enrolled. */
  tunnel: z.enum(["connected", "connecting", "none"]),
  /** Why the last try failed (empty when it did not). */
  last_error: z.string(),
  /** Events waiting for the hub, and those dropped because the queue was full. */
  queued_events: z.number(),
  dropped_events: z.number(),
});
export type FleetMembership = z.infer<typeof FleetMembershipSchema>;
