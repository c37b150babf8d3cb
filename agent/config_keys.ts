/**
 * Instance and server config keys, declared once: key -> schema, scope, live-update, default, doc.
 * `docs/config.md` is generated from this table (`deno task docs`).
 */
import { z } from "zod";
import { BadRequest } from "../contract/errors.ts";
import { addExpiry, parseByteSize, parseCpuSet } from "../contract/units.ts";
import { parseSchedule } from "./schedule.ts";
import { parseListenAddress } from "../contract/listen_address.ts";
import type { InstanceType } from "../contract/schemas.ts";

export type Scope = "any" | "container" | "vm";

/**
 * Whether a key can change while the instance runs (applied at once): for every type, or only
 * for the types named (a VM's memory and CPUs are fixed while QEMU runs).
 */
export type Live = boolean | { container: boolean; vm: boolean };

export interface ConfigKey {
  key: string;
  schema: z.ZodType<string>;
  scope: Scope;
  live: Live;
  default?: string;
  doc: string;
}

const bool = z.enum(["true", "false", "1", "0"], { error: "expected true or false" });

/** A positive whole number up to `max`, written in plain digits. */
function positiveUpTo(max: number) {
  return z.string().refine((v) => /^[1-9]\d{0,15}$/.test(v) && Number(v) <= max, {
    error: `expected a positive integer up to ${max}`,
  });
}

/** The kernel refuses pids.max at or above PID_MAX_LIMIT + 1. */
export const MAX_PROCESSES = 4_194_304;
/** Memory limits must be positive and at most 1 EiB (more cannot be set on any host). */
export const MIN_MEMORY = 1;
export const MAX_MEMORY = 2 ** 60;
/** CPU counts above this are refused (the CPU-set parser has the same bound). */
export const MAX_CPUS = 8192;

const byteSizeOrPercent = z.string().refine(
  (v) => {
    const pct = /^(\d{1,3})(\.\d{1,6})?%$/.exec(v);
    if (pct) return Number(v.slice(0, -1)) > 0 && Number(v.slice(0, -1)) <= 100;
    const bytes = parseByteSize(v);
    return bytes !== undefined && bytes >= MIN_MEMORY && bytes <= MAX_MEMORY;
  },
  {
    error:
      'expected a size up to 1EiB such as "256MiB" or "1GB", or a percentage above 0 and up to 100 such as "50%"',
  },
);
const cpuCountOrSet = z.string().refine(
  (v) =>
    (/^[1-9]\d{0,4}$/.test(v) && Number(v) <= MAX_CPUS) ||
    (!/^[1-9]\d*$/.test(v) && parseCpuSet(v) !== undefined),
  { error: `expected a CPU count from 1 to ${MAX_CPUS} such as "2" or a CPU set such as "0-1,3"` },
);
const anyString = z.string();

/**
 * Config key names: letters, digits and `._-:/` only, so a key can never carry a line break, a
 * `=` or a space into a generated file.
 */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._\-:/]{0,254}$/;
/** `environment.NAME`: a POSIX variable name, the only kind LXC and a shell can carry. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

/**
 * Values go to SQLite, to the LXC config (environment), to argv (limits): none may hold a NUL, and
 * nothing but `user.*` and `image.*` (never written into a generated file) may hold a control
 * character. Values written into the LXC config cannot start or end with white space either (the
 * format trims it and has no escaping).
 */
function checkValueBytes(key: string, value: string): void {
  // deno-lint-ignore no-control-regex
  if (/\u0000/.test(value)) throw new BadRequest(`Invalid value for config key "${key}": NUL byte`);
  if (key.startsWith("user.") || key.startsWith("image.")) return;
  // deno-lint-ignore no-control-regex
  if (/[\u0001-\u001f\u007f]/.test(value)) {
    throw new BadRequest(
      `Invalid value for config key "${key}": control characters (such as a line break) cannot be stored in it`,
    );
  }
  if (key.startsWith("environment.") && value !== value.trim()) {
    throw new BadRequest(
      `Invalid value for config key "${key}": leading or trailing white space cannot be represented in the LXC config`,
    );
  }
}

/** Exact keys. Namespaces (`environment.*`, `user.*`, ...) are in NAMESPACES below. */
export const INSTANCE_KEYS: ConfigKey[] = [
  {
    key: "limits.cpu",
    schema: cpuCountOrSet,
    scope: "any",
    live: { container: true, vm: false },
    doc: "Number of CPUs, or a CPU set (`0-1,3`) to pin to",
  },
  {
    key: "limits.memory",
    schema: byteSizeOrPercent,
    scope: "any",
    live: { container: true, vm: false },
    doc: "Memory limit in bytes (`256MiB`, `1GB`) or a percentage of host memory",
  },
  {
    key: "limits.processes",
    schema: positiveUpTo(MAX_PROCESSES),
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
  {
    key: "snapshots.schedule",
    schema: z.string().refine((v) => parseSchedule(v) !== undefined, {
      error: 'expected five cron fields (UTC) such as "0 3 * * *", or @hourly, @daily, @weekly...',
    }),
    scope: "any",
    live: true,
    doc:
      "When to take a snapshot (`snapN`): cron fields in UTC or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`",
  },
  {
    key: "snapshots.schedule.stopped",
    schema: bool,
    scope: "any",
    live: true,
    default: "false",
    doc: "Whether scheduled snapshots are also taken of a stopped instance",
  },
  {
    key: "snapshots.expiry",
    schema: z.string().refine((v) => {
      try {
        addExpiry(new Date(0), v);
        return true;
      } catch {
        return false;
      }
    }, { error: 'expected a duration such as "1d", "2w" or "12H" (units S M H d w m y)' }),
    scope: "any",
    live: true,
    doc: "How long a snapshot taken without an expiry is kept (`2d`, `1w`), then deleted",
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
/** A string `check` accepts (it throws an Error saying what is wrong); empty is always fine. */
function checkedBy(check: (v: string) => unknown) {
  return z.string().superRefine((v, ctx) => {
    if (v === "") return;
    try {
      check(v);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
    }
  });
}

export const SERVER_KEYS: ConfigKey[] = [
  {
    key: "core.https_address",
    schema: checkedBy(parseListenAddress),
    scope: "any",
    live: true,
    default: "",
    doc:
      "Where the HTTPS API listens (`[::]:8443`, `127.0.0.1:8443`, `:8443`; port 8443 when not given); empty for no HTTPS listener. Changing it moves the listener at once",
  },
  {
    key: "core.remote_token_expiry",
    schema: checkedBy((v) => addExpiry(new Date(), v)),
    scope: "any",
    live: true,
    default: "",
    doc:
      "How long a trust token is valid (`1H`, `2d`, `30M`; units S M H d w m y); empty for no expiry",
  },
  {
    key: "core.metrics_authentication",
    schema: bool,
    scope: "any",
    live: true,
    default: "true",
    doc:
      "Whether `/1.0/metrics` needs a trusted client or metrics certificate; `false` lets anyone who reaches the HTTPS listener read it",
  },
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

/** Whether `key` can change while an instance of `type` runs. */
export function isLive(key: ConfigKey, type: InstanceType): boolean {
  return typeof key.live === "boolean"
    ? key.live
    : key.live[type === "virtual-machine" ? "vm" : "container"];
}

function liveText(live: Live): string {
  if (typeof live === "boolean") return live ? "yes" : "no";
  return live.container && live.vm ? "yes" : live.container ? "containers" : live.vm ? "VMs" : "no";
}

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

/** Refuses key names that could not be written safely anywhere (a 400 naming the key). */
export function checkKeyName(key: string): void {
  if (typeof key !== "string" || !KEY_NAME.test(key)) {
    throw new BadRequest(
      `Invalid config key "${printable(key)}": use letters, digits and "._-:/" only`,
    );
  }
  const env = key.startsWith("environment.") ? key.slice("environment.".length) : undefined;
  if (env && !ENV_NAME.test(env)) {
    throw new BadRequest(
      `Invalid config key "${key}": an environment variable name has letters, digits and "_" only and does not start with a digit`,
    );
  }
}

/** A key or value as it can be shown in a one-line message. */
function printable(s: string): string {
  // deno-lint-ignore no-control-regex
  const shown = String(s).replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
  return shown.length > 80 ? `${shown.slice(0, 80)}...` : shown;
}

/** Validates one instance key/value, throwing BadRequest naming the key. */
export function checkConfigKey(key: string, value: string, type: InstanceType): ConfigKey {
  checkKeyName(key);
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
  checkKeyName(key);
  const exact = SERVER_KEYS.find((k) => k.key === key);
  if (exact) return checkValue(exact, value);
  const ns = SERVER_NAMESPACES.find((n) =>
    key.startsWith(n.prefix) && key.length > n.prefix.length
  );
  if (!ns) throw new BadRequest(`Unknown server config key "${key}"`);
  return checkValue({ key, schema: anyString, scope: "any", live: true, doc: ns.doc }, value);
}

function checkValue(decl: ConfigKey, value: string): ConfigKey {
  if (typeof value !== "string") {
    throw new BadRequest(`Invalid value for "${decl.key}": config values are strings`);
  }
  checkValueBytes(decl.key, value);
  const parsed = decl.schema.safeParse(value);
  if (!parsed.success) {
    const why = parsed.error.issues[0]?.message ?? "invalid";
    throw new BadRequest(
      `Invalid value "${printable(value)}" for config key "${decl.key}": ${why}`,
    );
  }
  return decl;
}

function typeLabel(type: InstanceType): string {
  return type === "container" ? "container" : "virtual machine";
}

/** Markdown reference of every key, for docs/config.md. */
export function configReference(): string {
  const rows = [
    ...INSTANCE_KEYS.map((k) => [k.key, k.scope, liveText(k.live), k.default ?? "", k.doc]),
    ...NAMESPACES.map((n) => [`${n.prefix}*`, n.scope, liveText(n.live), "", n.doc]),
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
