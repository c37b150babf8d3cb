/**
 * Instance and server config keys, declared once: key -> schema, scope, live-update, default, doc.
 * `docs/config.md` is generated from this table (`deno task docs`).
 */
import { z } from "zod";
import { BadRequest } from "./errors.ts";
import { parseByteSize, parseCpuSet } from "./units.ts";

export type InstanceType = "container" | "virtual-machine";
export type Scope = "any" | "container" | "vm";

export interface ConfigKey {
  key: string;
  schema: z.ZodType<string>;
  scope: Scope;
  /** Can be changed while the instance runs (applied at once). */
  live: boolean;
  default?: string;
  doc: string;
}

const bool = z.enum(["true", "false", "1", "0"], { error: "expected true or false" });
const positiveInt = z.string().regex(/^[1-9]\d*$/, { error: "expected a positive integer" });
const byteSizeOrPercent = z.string().refine(
  (v) => /^\d+(\.\d+)?%$/.test(v) || (parseByteSize(v) ?? 0) > 0,
  { error: 'expected a size such as "256MiB", "1GB" or a percentage such as "50%"' },
);
const cpuCountOrSet = z.string().refine(
  (v) => /^[1-9]\d*$/.test(v) || parseCpuSet(v) !== undefined,
  { error: 'expected a CPU count such as "2" or a CPU set such as "0-1,3"' },
);
const anyString = z.string();

/** Exact keys. Namespaces (`environment.*`, `user.*`, ...) are in NAMESPACES below. */
export const INSTANCE_KEYS: ConfigKey[] = [
  {
    key: "limits.cpu",
    schema: cpuCountOrSet,
    scope: "any",
    live: true,
    doc: "Number of CPUs, or a CPU set (`0-1,3`) to pin to",
  },
  {
    key: "limits.memory",
    schema: byteSizeOrPercent,
    scope: "any",
    live: true,
    doc: "Memory limit in bytes (`256MiB`, `1GB`) or a percentage of host memory",
  },
  {
    key: "limits.processes",
    schema: positiveInt,
    scope: "container",
    live: true,
    doc: "Maximum number of processes in the container",
  },
  {
    key: "boot.autostart",
    schema: bool,
    scope: "any",
    live: true,
    default: "false",
    doc: "Start the instance when the daemon starts",
  },
  {
    key: "security.privileged",
    schema: bool,
    scope: "container",
    live: false,
    default: "false",
    doc: "Run the container without a user namespace (root in the container is root on the host)",
  },
  {
    key: "security.nesting",
    schema: bool,
    scope: "container",
    live: false,
    default: "false",
    doc: "Allow nested containers (mounts /proc and /sys read-write for the container)",
  },
];

interface Namespace {
  prefix: string;
  scope: Scope;
  live: boolean;
  doc: string;
}

const NAMESPACES: Namespace[] = [
  {
    prefix: "environment.",
    scope: "any",
    live: true,
    doc: "Environment variables for `exec` (`environment.FOO=bar`)",
  },
  { prefix: "user.", scope: "any", live: true, doc: "Free-form user data" },
  { prefix: "image.", scope: "any", live: true, doc: "Properties copied from the source image" },
  { prefix: "volatile.", scope: "any", live: true, doc: "Internal state kept by the daemon" },
];

export const SERVER_NAMESPACES: Namespace[] = [
  { prefix: "user.", scope: "any", live: true, doc: "Free-form user data" },
];
export const SERVER_KEYS: ConfigKey[] = [
  {
    key: "core.vm_accel",
    schema: z.enum(["auto", "kvm", "tcg"], { error: "expected auto, kvm or tcg" }),
    scope: "vm",
    live: true,
    default: "auto",
    doc:
      "VM acceleration: `kvm` (refuse VMs without a usable KVM), `tcg` (software emulation), or `auto` (KVM when a probe guest runs, else TCG)",
  },
];

function fitsType(scope: Scope, type: InstanceType): boolean {
  return scope === "any" || (scope === "vm") === (type === "virtual-machine");
}

/** The key's declaration, or undefined if `key` is unknown for `type`. */
export function findInstanceKey(key: string, type: InstanceType): ConfigKey | undefined {
  const exact = INSTANCE_KEYS.find((k) => k.key === key);
  if (exact) return fitsType(exact.scope, type) ? exact : undefined;
  const ns = NAMESPACES.find((n) => key.startsWith(n.prefix) && key.length > n.prefix.length);
  if (!ns || !fitsType(ns.scope, type)) return undefined;
  return { key, schema: anyString, scope: ns.scope, live: ns.live, doc: ns.doc };
}

/** Validates one instance key/value, throwing BadRequest naming the key. */
export function checkConfigKey(key: string, value: string, type: InstanceType): ConfigKey {
  const decl = findInstanceKey(key, type);
  if (!decl) {
    const known = INSTANCE_KEYS.find((k) => k.key === key);
    if (known) {
      throw new BadRequest(`Config key "${key}" does not apply to a ${typeLabel(type)}`);
    }
    throw new BadRequest(`Unknown config key "${key}"`);
  }
  return checkValue(decl, value);
}

/** Validates a whole instance config map. */
export function checkInstanceConfig(config: Record<string, string>, type: InstanceType): void {
  for (const [key, value] of Object.entries(config)) checkConfigKey(key, value, type);
}

/** Validates one server key/value. */
export function checkServerKey(key: string, value: string): ConfigKey {
  const exact = SERVER_KEYS.find((k) => k.key === key);
  if (exact) return checkValue(exact, value);
  const ns = SERVER_NAMESPACES.find((n) =>
    key.startsWith(n.prefix) && key.length > n.prefix.length
  );
  if (!ns) throw new BadRequest(`Unknown server config key "${key}"`);
  return { key, schema: anyString, scope: "any", live: true, doc: ns.doc };
}

function checkValue(decl: ConfigKey, value: string): ConfigKey {
  if (typeof value !== "string") {
    throw new BadRequest(`Invalid value for "${decl.key}": config values are strings`);
  }
  const parsed = decl.schema.safeParse(value);
  if (!parsed.success) {
    const why = parsed.error.issues[0]?.message ?? "invalid";
    throw new BadRequest(`Invalid value "${value}" for config key "${decl.key}": ${why}`);
  }
  return decl;
}

export function isTrue(value: string | undefined): boolean {
  return value === "true" || value === "1";
}

function typeLabel(type: InstanceType): string {
  return type === "container" ? "container" : "virtual machine";
}

/** Markdown reference of every key, for docs/config.md. */
export function configReference(): string {
  const rows = [
    ...INSTANCE_KEYS.map((k) => [k.key, k.scope, k.live ? "yes" : "no", k.default ?? "", k.doc]),
    ...NAMESPACES.map((n) => [`${n.prefix}*`, n.scope, n.live ? "yes" : "no", "", n.doc]),
  ];
  const server = [
    ...SERVER_KEYS.map((k) => [k.key, k.default ?? "", k.doc]),
    ...SERVER_NAMESPACES.map((n) => [`${n.prefix}*`, "", n.doc]),
  ];
  const table = (head: string[], body: string[][]) =>
    [
      `| ${head.join(" | ")} |`,
      `|${head.map(() => "---").join("|")}|`,
      ...body.map((r) =>
        `| ${r.map((c) => c.includes("*") && !c.includes("`") ? `\`${c}\`` : c).join(" | ")} |`
      ),
    ].join("\n");
  return [
    "# Configuration keys",
    "",
    "Generated from `agent/config_keys.ts` by `deno task docs`; do not edit by hand.",
    "Unknown keys are refused with a message naming the key.",
    "",
    "## Instance keys",
    "",
    table(["key", "applies to", "live", "default", "description"], rows),
    "",
    "## Server keys (`outpost config set KEY=VALUE`)",
    "",
    table(["key", "default", "description"], server),
    "",
  ].join("\n");
}
