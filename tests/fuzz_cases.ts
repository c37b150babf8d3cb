/**
 * The malformed requests of the hostile fuzz test (`hostile_fuzz_test.ts`), family by family, from
 * a seeded PRNG. Every case is built to be refused (`expect: "reject"`) or only reads
 * (`expect: "any"`), so whatever it makes the daemon accept, answer 5xx or change is a bug there.
 */
import { concatBytes } from "../contract/bytes.ts";

// ---------------------------------------------------------------------------------------------
// PRNG

/** mulberry32: a tiny, fast, seedable PRNG (the same seed gives the same cases). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  /** `n` distinct items (all of them when there are fewer). */
  sample<T>(xs: readonly T[], n: number): T[] {
    return this.shuffle([...xs]).slice(0, n);
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
  hex(n: number): string {
    return Array.from({ length: n }, () => "0123456789abcdef"[this.int(16)]).join("");
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

// ---------------------------------------------------------------------------------------------
// Cases

export interface FuzzCase {
  family: string;
  method: string;
  /** The request-target as sent, one char per byte (latin1), so any byte can be sent. */
  target: string;
  /** Extra header lines (latin1). */
  headers?: [string, string][];
  /** The Host header: "outpost" when undefined, none when null. */
  host?: string | null;
  body?: Uint8Array;
  /** "reject": must be refused with a 4xx. "any": only reads; any answer below 500. */
  expect: "reject" | "any";
  /** Not valid HTTP/1.1: the HTTP layer may answer a bare 4xx or close the connection. */
  protocol?: boolean;
  /** Aimed at a real object on purpose, with input that must be refused. */
  aimed?: boolean;
  /** What is malformed, for the report. */
  what: string;
}

/** The real objects cases aim at. */
export interface Targets {
  stopped: string;
  running: string;
  snap: string;
  alias: string;
  fingerprint: string;
  /** Ids of finished operations. */
  finishedOps: string[];
  /** A log file of the running instance (from a recorded exec). */
  logFile: string;
  /** A fifo, and a symlink to /dev/zero, inside the running instance. */
  fifo: string;
  zeroLink: string;
  /** The current writable fields of each instance (for PUT bodies that change nothing). */
  records: Record<string, Record<string, unknown>>;
  /** An exec operation waiting for its websockets (for wrong secrets). */
  liveOp?: { id: string; secrets: Record<string, string> };
}

const te = new TextEncoder();

/** Whitespace-separated words (keeps long lists of tokens short). */
const words = (s: string): string[] => s.split(" ");

/** Bytes of a latin1 string (one char, one byte); anything wider is a bug in a generator. */
export function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new Error(`Not latin1 at ${i}: ${JSON.stringify(s.slice(0, 80))}`);
    out[i] = c;
  }
  return out;
}

/** Raw bytes spliced into a JSON text where a placeholder string sits. */
interface Splice {
  /** A private-use char the value carries; replaced with `bytes` (with its quotes if `whole`). */
  token: string;
  bytes: Uint8Array;
  whole?: boolean;
}

/** A JSON body with raw bytes (invalid UTF-8, out-of-range numbers) spliced in. */
export function jsonBytes(value: unknown, splices: Splice[] = []): Uint8Array {
  let text = JSON.stringify(value);
  const parts: Uint8Array[] = [];
  for (;;) {
    let at = -1;
    let hit: Splice | undefined;
    for (const s of splices) {
      const needle = s.whole ? `"${s.token}"` : s.token;
      const i = text.indexOf(needle);
      if (i >= 0 && (at < 0 || i < at)) [at, hit] = [i, s];
    }
    if (!hit) break;
    parts.push(te.encode(text.slice(0, at)), hit.bytes);
    text = text.slice(at + (hit.whole ? hit.token.length + 2 : hit.token.length));
  }
  parts.push(te.encode(text));
  return concat(parts);
}

export const concat = concatBytes;

const BAD_UTF8: [string, number[]][] = [
  ["0xff", [0xff]],
  ["overlong NUL", [0xc0, 0x80]],
  ["lone continuation", [0x80]],
  ["truncated 3-byte", [0xe2, 0x82]],
  ["UTF-8 surrogate", [0xed, 0xa0, 0x80]],
  ["5-byte form", [0xf8, 0x88, 0x80, 0x80, 0x80]],
  ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
];
const RAW = "\uE000";
const RAW_NUM = "\uE001";

/** A string value with something wrong in it, and the splices that put raw bytes in. */
interface BadString {
  value: string;
  splices?: Splice[];
  what: string;
}

function withNul(s: string, rng: Rng): BadString {
  const at = rng.int(s.length + 1);
  return { value: s.slice(0, at) + "\0" + s.slice(at), what: "NUL byte" };
}

const CONTROLS: [string, string][] = [
  ["\n", "newline"],
  ["\r", "carriage return"],
  ["\r\n", "CRLF"],
  ["\t", "tab"],
  ["\x1b", "ESC"],
  ["\x7f", "DEL"],
];

function withControl(s: string, rng: Rng): BadString {
  const [c, what] = rng.pick(CONTROLS);
  const at = rng.int(s.length + 1);
  return { value: s.slice(0, at) + c + s.slice(at), what };
}

function withBadUtf8(s: string, rng: Rng): BadString {
  const [what, bytes] = rng.pick(BAD_UTF8);
  const at = rng.int(s.length + 1);
  return {
    value: s.slice(0, at) + RAW + s.slice(at),
    splices: [{ token: RAW, bytes: Uint8Array.from(bytes) }],
    what: `invalid UTF-8 (${what})`,
  };
}

function withSurrogate(s: string): BadString {
  return { value: `${s}\ud800`, what: "lone surrogate escape" };
}

/** Strings invalid in any field: NUL, invalid UTF-8, a lone surrogate. */
function alwaysBad(s: string, rng: Rng): BadString[] {
  return [withNul(s, rng), withBadUtf8(s, rng), withBadUtf8(s, rng), withSurrogate(s)];
}

/** Strings invalid where only names and identifiers go: those, control characters, length. */
function identBad(s: string, rng: Rng): BadString[] {
  return [
    ...alwaysBad(s, rng),
    withControl(s, rng),
    withControl(s, rng),
    { value: "\n", what: "newline only" },
    { value: "x".repeat(5000), what: "5000 chars" },
  ];
}

const INSTANCE_NAMES_BAD = [
  "",
  ...words(".. . -a 1a a- a_b"),
  "a b",
  "a/b",
  "a.b",
  "\u00e9t\u00e9",
  "a".repeat(64),
];
const SNAPSHOT_NAMES_BAD = ["..", ".", "a/b", "/", "x".repeat(256)];
const ALIAS_NAMES_BAD = ["", "..", ".", "a b", "a/b", "a:b", "x".repeat(256), " "];
const NETWORK_NAMES_BAD = ["", "Br0", "a_b", "-a", "0a", "a b", "a/b", "a".repeat(16), "\u00e9"];
const PROFILE_NAMES_BAD = [
  "",
  "..",
  ".",
  "-a",
  "_a",
  "a b",
  "a/b",
  "a:b",
  "\u00e9",
  "a".repeat(64),
];

// ---------------------------------------------------------------------------------------------
// JSON bodies: endpoints, fields and the values that break them

type Kind =
  | "instanceName"
  | "snapName"
  | "newSnapName"
  | "aliasName"
  | "profileName"
  | "networkName"
  | "enum"
  | "text"
  | "ref"
  | "bool"
  | "int"
  | "uint"
  | "argv"
  | "profiles"
  | "config"
  | "serverConfig"
  | "env"
  | "devices"
  | "date"
  | "path"
  | "source";

interface Field {
  key: string;
  kind: Kind;
  /** Valid values of an enum. */
  values?: string[];
  /** null is a valid value (nullish in the schema). */
  nullable?: boolean;
}

interface BodyEndpoint {
  id: string;
  method: string;
  path: string;
  /** A body that, sent as is, changes nothing (or is refused); mutations make it malformed. */
  base: Record<string, unknown>;
  fields: Field[];
  /** An empty body is malformed here (not a valid "all defaults"). */
  emptyInvalid: boolean;
  /** A field that gets a fresh valid name per case (so one wrongly accepted case hides none). */
  fresh?: string;
}

/** Fields from a compact spec: `key:kind`, `?` when null is valid, `=a|b` for an enum's values. */
function fields(spec: string): Field[] {
  return spec.trim().split(/\s+/).map((item) => {
    const [, key, kind, nullable, values] = /^([^:]+):(\w+)(\?)?(?:=(.*))?$/.exec(item)!;
    return { key, kind: kind as Kind, nullable: !!nullable, values: values?.split("|") };
  });
}

function endpoint(
  id: string,
  path: string,
  base: Record<string, unknown>,
  spec: string,
  opts: { emptyInvalid?: boolean; fresh?: string } = {},
): BodyEndpoint {
  return {
    id,
    method: id.split(" ")[0],
    path,
    base,
    fields: fields(spec),
    emptyInvalid: opts.emptyInvalid ?? true,
    fresh: opts.fresh,
  };
}

const PUT_FIELDS = "config:config? devices:devices? profiles:profiles? description:text " +
  "ephemeral:bool architecture:text stateful:bool restore:ref";
const PATCH_FIELDS = "config:config devices:devices profiles:profiles description:text " +
  "ephemeral:bool";
const STATE_FIELDS = "action:enum=start|stop|restart|freeze|unfreeze timeout:int force:bool " +
  "stateful:bool";
const EXEC_FIELDS = "command:argv environment:env? wait-for-websocket:bool record-output:bool " +
  "interactive:bool width:int height:int user:uint group:uint cwd:path";
const CONSOLE_FIELDS = "width:uint height:uint type:enum=console|vga force:bool";
const RENAME_FIELDS = "name:instanceName migration:bool live:bool instance_only:bool " +
  "container_only:bool allow_inconsistent:bool pool:text project:text";

/**
 * Every endpoint that takes a JSON body, with a base body that changes nothing when sent as is
 * (the current values, or a create refused for another reason), so only the mutation matters.
 */
function bodyEndpoints(t: Targets): BodyEndpoint[] {
  const { stopped, running, snap, alias, fingerprint } = t;
  const inst = (n: string) => `/1.0/instances/${n}`;
  const which = (n: string) => n === stopped ? "{stopped}" : "{running}";
  const config = (n: string) => (t.records[n]?.config ?? {}) as Record<string, string>;
  const writable = (n: string) => {
    const r = t.records[n] ?? {};
    return {
      config: Object.fromEntries(
        Object.entries(config(n)).filter(([k]) => !k.startsWith("volatile.")),
      ),
      devices: r.devices ?? {},
      profiles: r.profiles ?? [],
      description: r.description ?? "",
      ephemeral: r.ephemeral ?? false,
    };
  };
  const canary = (n: string) => ({ config: { "user.canary": config(n)["user.canary"] ?? "1" } });
  const server = { config: { "user.fuzz-canary": "1" } };
  return [
    endpoint("PUT /1.0", "/1.0", server, "config:serverConfig?", { emptyInvalid: false }),
    endpoint("PATCH /1.0", "/1.0", server, "config:serverConfig?", { emptyInvalid: false }),
    endpoint(
      "POST /1.0/instances",
      "/1.0/instances",
      { name: "fz", source: { type: "image", alias } },
      "name:instanceName type:enum=container|virtual-machine| source:source config:config? " +
        "devices:devices? profiles:profiles? description:text ephemeral:bool start:bool " +
        "stateful:bool architecture:text instance_type:text",
      { fresh: "name" },
    ),
    ...[stopped, running].flatMap((n) => [
      endpoint(`PUT /1.0/instances/${which(n)}`, inst(n), writable(n), PUT_FIELDS),
      endpoint(`PATCH /1.0/instances/${which(n)}`, inst(n), canary(n), PATCH_FIELDS, {
        emptyInvalid: false,
      }),
      endpoint(`PUT /1.0/instances/${which(n)}/state`, `${inst(n)}/state`, {
        action: n === stopped ? "stop" : "start",
      }, STATE_FIELDS),
      endpoint(`POST /1.0/instances/${which(n)}/exec`, `${inst(n)}/exec`, {
        command: ["true"],
      }, EXEC_FIELDS),
      endpoint(
        `POST /1.0/instances/${which(n)}/console`,
        `${inst(n)}/console`,
        {
          width: 80,
          height: 24,
        },
        CONSOLE_FIELDS,
        { emptyInvalid: false },
      ),
      endpoint(
        `POST /1.0/instances/${which(n)}/snapshots`,
        `${inst(n)}/snapshots`,
        { name: "fz" },
        "name:snapName stateful:bool expires_at:date?",
        { emptyInvalid: false, fresh: "name" },
      ),
    ]),
    // Running: a rename is refused whatever the name, so only the body's shape is tested.
    endpoint(
      "POST /1.0/instances/{running} (rename)",
      inst(running),
      { name: `fz-renamed` },
      RENAME_FIELDS,
    ),
    // The same name: refused whatever else the body says.
    endpoint(
      "POST /1.0/instances/{stopped}/snapshots/{snap} (rename)",
      `${inst(stopped)}/snapshots/${snap}`,
      { name: snap },
      "name:newSnapName migration:bool live:bool",
    ),
    ...["PUT", "PATCH"].map((method) =>
      endpoint(
        `${method} /1.0/instances/{stopped}/snapshots/{snap}`,
        `${inst(stopped)}/snapshots/${snap}`,
        { description: "", expires_at: null },
        "expires_at:date? description:text",
        { emptyInvalid: false },
      )
    ),
    endpoint(
      "POST /1.0/images/aliases",
      "/1.0/images/aliases",
      { name: "fz", target: fingerprint },
      "name:aliasName target:ref description:text type:text",
      { fresh: "name" },
    ),
    endpoint(
      "PUT /1.0/images/aliases/{alias}",
      `/1.0/images/aliases/${alias}`,
      { target: fingerprint, description: "" },
      "target:ref description:text",
    ),
    // Every case is refused before a bridge could be made (a fresh name each).
    endpoint(
      "POST /1.0/networks",
      "/1.0/networks",
      { name: "fz", config: { "ipv4.address": "none" } },
      "name:networkName description:text type:enum=bridge| config:config?",
      { fresh: "name" },
    ),
    endpoint(
      "POST /1.0/profiles",
      "/1.0/profiles",
      { name: "fz" },
      "name:profileName description:text config:config? devices:devices?",
      { fresh: "name" },
    ),
    ...["PUT", "PATCH"].map((method) =>
      endpoint(
        `${method} /1.0/profiles/default`,
        "/1.0/profiles/default",
        { description: "Default outpost profile" },
        "description:text config:config? devices:devices?",
        { emptyInvalid: false },
      )
    ),
    endpoint(
      "POST /1.0/profiles/default (rename)",
      "/1.0/profiles/default",
      { name: "default" },
      "name:profileName",
    ),
    endpoint(
      "POST /1.0/instances/{stopped}/backups",
      `${inst(stopped)}/backups`,
      { name: "b0" },
      "name:snapName",
      { emptyInvalid: false },
    ),
  ];
}

/** A value that breaks one field, as the field's new value. */
interface Mutation {
  value: unknown;
  splices?: Splice[];
  what: string;
}

const num = (text: string): Mutation => ({
  value: RAW_NUM,
  splices: [{ token: RAW_NUM, bytes: te.encode(text), whole: true }],
  what: `number ${text}`,
});

/** Values of the wrong JSON type for a field of `kind`. */
function wrongTypes(f: Field): Mutation[] {
  const isString = [
    ...words(
      "instanceName snapName newSnapName aliasName profileName networkName enum text ref date path",
    ),
  ].includes(f.kind);
  const all: [unknown, string][] = [
    [5, "number"],
    [true, "boolean"],
    ["true", "string"],
    [["x"], "array"],
    [{ a: "b" }, "object"],
  ];
  if (!f.nullable) all.push([null, "null"]);
  const out: Mutation[] = [];
  for (const [value, type] of all) {
    if (type === "string" && isString) continue;
    if (type === "number" && ["int", "uint"].includes(f.kind)) continue;
    if (type === "boolean" && f.kind === "bool") continue;
    if (type === "array" && ["argv", "profiles"].includes(f.kind)) continue;
    if (
      type === "object" && ["config", "serverConfig", "env", "devices", "source"].includes(f.kind)
    ) {
      continue;
    }
    out.push({ value, what: `${type} for ${f.kind}` });
  }
  return out;
}

function asMutations(bad: BadString[]): Mutation[] {
  return bad.map((b) => ({ value: b.value, splices: b.splices, what: b.what }));
}

/** One bad entry merged into a map-valued field (config, environment, devices). */
function mapMutations(
  base: Record<string, unknown>,
  entries: [string, unknown, string, Splice[]?][],
): Mutation[] {
  return entries.map(([k, v, what, splices]) => ({
    value: { ...base, [k]: v },
    splices,
    what,
  }));
}

const badUtf8Entry = (rng: Rng): [string, Splice[]] => {
  const [what, bytes] = rng.pick(BAD_UTF8);
  return [what, [{ token: RAW, bytes: Uint8Array.from(bytes) }]];
};

/** Every malformed value for one field. */
function fieldMutations(f: Field, baseValue: unknown, rng: Rng): Mutation[] {
  const s = typeof baseValue === "string" ? baseValue : "x";
  const out = wrongTypes(f);
  const map = (baseValue ?? {}) as Record<string, unknown>;
  const [u8what, u8] = badUtf8Entry(rng);
  switch (f.kind) {
    case "instanceName":
      out.push(...asMutations(identBad(s || "fz", rng)));
      out.push(...INSTANCE_NAMES_BAD.map((v) => ({ value: v, what: `name ${short(v)}` })));
      break;
    case "snapName":
    case "newSnapName":
      out.push(...asMutations(identBad(s || "s", rng)));
      out.push(...SNAPSHOT_NAMES_BAD.map((v) => ({ value: v, what: `name ${short(v)}` })));
      if (f.kind === "newSnapName") out.push({ value: "", what: "empty name" });
      break;
    case "networkName":
      out.push(...asMutations(identBad(s, rng)));
      out.push(...NETWORK_NAMES_BAD.map((v) => ({ value: v, what: `network name ${short(v)}` })));
      break;
    case "profileName":
      out.push(...asMutations(identBad(s, rng)));
      out.push(...PROFILE_NAMES_BAD.map((v) => ({ value: v, what: `profile name ${short(v)}` })));
      break;
    case "aliasName":
      out.push(...asMutations(identBad(s, rng)));
      out.push(...ALIAS_NAMES_BAD.map((v) => ({ value: v, what: `alias name ${short(v)}` })));
      break;
    case "enum": {
      const vals = f.values ?? [];
      const cands = [
        s.toUpperCase(),
        ` ${s}`,
        `${s} `,
        "bogus",
        "",
        "x".repeat(5000),
      ].filter((v) => !vals.includes(v));
      out.push(...cands.map((v) => ({ value: v, what: `enum value ${short(v)}` })));
      out.push(...asMutations(identBad(s, rng)));
      break;
    }
    case "text":
      out.push(...asMutations(alwaysBad(s, rng)));
      break;
    case "ref":
      out.push(...asMutations(identBad(s || "ref", rng)));
      out.push({ value: `nope-${rng.hex(6)}`, what: "unknown reference" });
      out.push({ value: "../../etc/passwd", what: "path as reference" });
      break;
    case "date":
      out.push(
        ...["not a date", "2020-13-45T00:00:00Z", "tomorrow", "9".repeat(50), "2030-01-01"].map((
          v,
        ) => ({ value: v, what: `date ${short(v)}` })),
      );
      out.push(...asMutations(identBad("2030-01-01T00:00:00Z", rng)));
      break;
    case "path":
      out.push(...asMutations(alwaysBad(s || "/root", rng)));
      out.push({ value: `/${"a".repeat(5000)}`, what: "5000-char path" });
      break;
    case "bool":
      out.push({ value: "yes", what: 'string "yes"' }, { value: 1, what: "number 1" });
      break;
    case "int":
      out.push(
        { value: 1.5, what: "fraction" },
        { value: "5", what: "numeric string" },
        num("1e309"),
        num("-1e309"),
        { value: 1e21, what: "1e21" },
        { value: 2 ** 53 + 2, what: "2^53+2" },
      );
      break;
    case "uint":
      out.push(
        { value: -1, what: "negative" },
        { value: 1.5, what: "fraction" },
        { value: "5", what: "numeric string" },
        num("1e309"),
        { value: 2 ** 53 + 2, what: "2^53+2" },
        { value: 2 ** 32, what: "2^32" },
      );
      break;
    case "argv":
      out.push(
        { value: [], what: "empty command" },
        { value: [5], what: "number in argv" },
        { value: [null], what: "null in argv" },
        { value: [["true"]], what: "nested array in argv" },
        { value: ["true", "a\0b"], what: "NUL in argv" },
        { value: ["tr\0ue"], what: "NUL in argv[0]" },
        { value: ["true", `a${RAW}`], splices: u8, what: `invalid UTF-8 in argv (${u8what})` },
        { value: ["true", "\ud800"], what: "lone surrogate in argv" },
      );
      break;
    case "profiles":
      out.push(
        { value: [""], what: "empty profile name" },
        { value: [`nope${rng.hex(4)}`], what: "unknown profile" },
        { value: ["default\n"], what: "newline in profile" },
        { value: ["def\0ault"], what: "NUL in profile" },
        { value: [5], what: "number in profiles" },
        { value: [null], what: "null in profiles" },
        { value: ["x".repeat(5000)], what: "5000-char profile" },
        { value: [`d${RAW}`], splices: u8, what: `invalid UTF-8 in profile (${u8what})` },
      );
      break;
    case "config":
      out.push(...mapMutations(map, configEntries(rng)));
      break;
    case "serverConfig":
      out.push(...mapMutations(map, [
        ["core.bogus", "1", "unknown server key"],
        ["bogus", "1", "key without namespace"],
        ["user.a\nb", "1", "newline in key"],
        ["user.a\0b", "1", "NUL in key"],
        ["core.vm_accel", "turbo", "core.vm_accel=turbo"],
        ["core.vm_accel", "KVM", "core.vm_accel=KVM"],
        ["core.vm_accel", "kvm\n", "newline in core.vm_accel"],
        ["user.fz", "a\0b", "NUL in user value"],
        [`user.${RAW}`, "1", `invalid UTF-8 in key (${u8what})`, u8],
        ["user.fz", `a${RAW}`, `invalid UTF-8 in value (${u8what})`, u8],
        ["user.fz", 5, "number value"],
        ["user.fz", null, "null value"],
        ["user.fz", ["x"], "array value"],
        [`user.${"k".repeat(5000)}`, "1", "5000-char key"],
      ]));
      break;
    case "env":
      out.push(...mapMutations(map, [
        ["", "1", "empty variable name"],
        ["A=B", "1", '"=" in variable name'],
        ["A\nB", "1", "newline in variable name"],
        ["A\0B", "1", "NUL in variable name"],
        ["A B", "1", "space in variable name"],
        ["FZ", "x\0y", "NUL in value"],
        [`F${RAW}`, "1", `invalid UTF-8 in name (${u8what})`, u8],
        ["FZ", `v${RAW}`, `invalid UTF-8 in value (${u8what})`, u8],
        ["FZ", 5, "number value"],
        ["FZ", null, "null value"],
        ["FZ", ["x"], "array value"],
      ]));
      break;
    case "devices":
      out.push(...mapMutations(map, [
        ["bad\nname", { type: "none" }, "newline in device name"],
        ["a\0", { type: "none" }, "NUL in device name"],
        ["a/b", { type: "none" }, '"/" in device name'],
        ["..", { type: "none" }, 'device named ".."'],
        ["", { type: "none" }, "empty device name"],
        ["x".repeat(5000), { type: "none" }, "5000-char device name"],
        ["fz", { type: "bogus" }, "unknown device type"],
        ["fz", {}, "device without type"],
        ["fz", "none", "device as a string"],
        ["fz", { type: 5 }, "number as device type"],
        ["fz", { type: "none", "k\0": "v" }, "NUL in device key"],
        ["fz", { type: "none", k: 5 }, "number as device value"],
        ["fz", null, "null device"],
        ["fz", { type: `n${RAW}` }, `invalid UTF-8 in device type (${u8what})`, u8],
        ["fz", { type: "disk", path: "/", pool: "nope" }, "root disk on a missing pool"],
        ["fz", { type: "disk", path: "relative", pool: "default" }, "relative disk path"],
        ["fz", { type: "disk", path: "/a/../b", pool: "default" }, '".." in a disk path'],
        ["fz", { type: "disk", path: "/srv", source: "/e tc" }, "space in a host path"],
        ["fz", { type: "disk", path: "/srv", source: "/a,b" }, "comma in a host path"],
        ["fz", { type: "disk", path: "/srv", source: "etc" }, "relative host path"],
        ["fz", { type: "disk", path: "/srv" }, "disk without a source"],
        ["fz", { type: "disk", path: "/srv", source: "/srv", readonly: "yes" }, "readonly yes"],
        ["fz", { type: "disk", path: "/\n", pool: "default" }, "newline in a disk path"],
        ["fz", { type: "disk", path: "/", pool: "a\nb" }, "newline in a pool name"],
        ["fz", { type: "nic", network: "br0" }, "a nic (not yet)"],
      ]));
      break;
    case "source":
      out.push(
        { value: { type: "IMAGE", alias: "x" }, what: "source.type IMAGE" },
        { value: { type: "url", alias: "x" }, what: "source.type url" },
        { value: { type: "", alias: "x" }, what: "empty source.type" },
        { value: { alias: "x" }, what: "source without type" },
        { value: { type: "image" }, what: "image source without alias" },
        { value: { type: "image", alias: 5 }, what: "number as source.alias" },
        { value: { type: "image", alias: "" }, what: "empty source.alias" },
        { value: { type: "image", alias: "a\0b" }, what: "NUL in source.alias" },
        { value: { type: "image", alias: "a\nb" }, what: "newline in source.alias" },
        { value: { type: "image", fingerprint: "zz" }, what: "non-hex fingerprint" },
        { value: { type: "image", fingerprint: "" }, what: "empty fingerprint" },
        {
          value: { type: "image", alias: `a${RAW}` },
          splices: u8,
          what: `invalid UTF-8 in source.alias (${u8what})`,
        },
        { value: { type: "image", alias: "x", properties: { a: 5 } }, what: "number property" },
        { value: { type: "image", alias: "x".repeat(5000) }, what: "5000-char alias" },
      );
      break;
  }
  return out;
}

/** Config entries that must each be refused (keys and values). */
function configEntries(rng: Rng): [string, unknown, string, Splice[]?][] {
  const [u8what, u8] = badUtf8Entry(rng);
  return [
    ["bogus", "1", "unknown key"],
    ["limits.nope", "1", "unknown limits key"],
    ["user.a\nb", "1", "newline in user key"],
    ["user.a\0b", "1", "NUL in user key"],
    ["user.fz", "a\0b", "NUL in user value"],
    ["environment.", "1", "empty environment name"],
    ["environment.A=B", "1", '"=" in environment name'],
    ["environment.1A", "1", "environment name starting with a digit"],
    ["environment.A B", "1", "space in environment name"],
    [
      "environment.FZ\nlxc.environment = FUZZ_INJECTED",
      "1",
      "newline in environment key (config injection)",
    ],
    [
      "environment.FZ",
      "1\nlxc.environment = FUZZ_INJECTED=1",
      "newline in environment value (config injection)",
    ],
    ["environment.FZ", "a\0b", "NUL in environment value"],
    ["environment.FZ", "a\rb", "CR in environment value"],
    ["limits.memory", "0%", "limits.memory=0%"],
    ["limits.memory", "1000EiB", "limits.memory=1000EiB"],
    ["limits.memory", "abc", "limits.memory=abc"],
    ["limits.memory", "-1", "limits.memory=-1"],
    ["limits.memory", "128MiB\n", "newline in limits.memory"],
    ["limits.processes", "99999999999999999999", "limits.processes=10^20"],
    ["limits.processes", "0", "limits.processes=0"],
    ["limits.processes", "-5", "limits.processes=-5"],
    ["limits.cpu", "abc", "limits.cpu=abc"],
    ["limits.cpu", "-1", "limits.cpu=-1"],
    ["limits.cpu", "99999999999999999999", "limits.cpu=10^20"],
    ["boot.autostart", "maybe", "boot.autostart=maybe"],
    ["security.nesting", "2", "security.nesting=2"],
    [`user.${"k".repeat(5000)}`, "1", "5000-char key"],
    [`user.${RAW}`, "1", `invalid UTF-8 in key (${u8what})`, u8],
    ["user.fz", `a${RAW}`, `invalid UTF-8 in value (${u8what})`, u8],
    ["user.fz", "\ud800", "lone surrogate in value"],
    ["user.fz", 5, "number value"],
    ["user.fz", true, "boolean value"],
    ["user.fz", null, "null value"],
    ["user.fz", ["x"], "array value"],
    ["user.fz", { a: "b" }, "object value"],
  ];
}

function short(v: string): string {
  const s = JSON.stringify(v.length > 24 ? `${v.slice(0, 12)}…(${v.length})` : v);
  return s;
}

function setField(base: Record<string, unknown>, key: string, value: unknown) {
  return { ...base, [key]: value };
}

/** Whole bodies that are not a JSON object at all, or not JSON. */
function garbledBodies(base: Record<string, unknown>, rng: Rng, emptyInvalid: boolean) {
  const text = JSON.stringify(base);
  const out: [Uint8Array, string][] = [];
  const add = (s: string | Uint8Array, what: string) =>
    out.push([typeof s === "string" ? te.encode(s) : s, what]);
  for (let i = 0; i < 3; i++) {
    const cut = 1 + rng.int(Math.max(1, text.length - 2));
    add(text.slice(0, cut), `truncated at ${cut}`);
  }
  add("{", "lone {");
  add("[", "lone [");
  add("}", "lone }");
  add('{"', "open key");
  add('{"a":}', "missing value");
  add(`${text}x`, "trailing garbage");
  add(`${text}}`, "extra }");
  add(`${text}${text}`, "two objects");
  add(text.replaceAll('"', "'"), "single quotes");
  add(text.replace(/"([^"]+)":/g, "$1:"), "unquoted keys");
  add(`${text.slice(0, -1)},}`, "trailing comma");
  add(`/* c */${text}`, "comment");
  add(`\uFEFF${text}`, "byte order mark");
  add("NaN", "NaN");
  add("null", "null");
  add("1", "number");
  add('"str"', "string");
  add("[]", "array");
  add(`[${text}]`, "object in an array");
  add("true", "boolean");
  add('{"a":"b\nc"}', "raw newline in a string");
  add('{"a":0x10}', "hex number");
  add('{"a":+1}', "plus sign");
  add('{"a":"\\x41"}', "bad escape");
  add('{"a":"\\u12"}', "short unicode escape");
  add("\0\0\0\0", "NUL bytes");
  add(concat([Uint8Array.of(0xff, 0xfe), te.encode(text)]), "UTF-16 BOM then UTF-8");
  add(Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0), "gzip header");
  let random = rng.bytes(64);
  while (parsesAsObject(random)) random = rng.bytes(64);
  add(random, "64 random bytes");
  const picked = rng.sample(out, 14);
  if (emptyInvalid) {
    for (const [body, what] of [["", "empty body"], ["   \n", "white space only"], ["{}", "{}"]]) {
      picked.push([te.encode(body), what]);
    }
  }
  return picked;
}

function parsesAsObject(bytes: Uint8Array): boolean {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes));
    return v !== null && typeof v === "object";
  } catch {
    return false;
  }
}

const UNKNOWN_FIELDS: [string, unknown][] = [
  ["bogus", 1],
  ["Config", {}],
  ["__proto__", { config: {} }],
  ["constructor", "x"],
  ["x-fuzz", null],
  ["", ""],
  ["bogus\0", 1],
];

/** `JSON.stringify` drops a `__proto__` key set by spreading; this keeps it as an own key. */
function withKey(base: Record<string, unknown>, key: string, value: unknown) {
  const out: Record<string, unknown> = { ...base };
  Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
  return out;
}

function jsonCase(family: string, ep: BodyEndpoint, body: Uint8Array, what: string): FuzzCase {
  return {
    family,
    method: ep.method,
    target: ep.path,
    headers: [["Content-Type", "application/json"]],
    body,
    expect: "reject",
    aimed: true,
    what: `${ep.id}: ${what}`,
  };
}

/** The endpoint's base body, with a fresh name where it has one. */
function baseOf(ep: BodyEndpoint, rng: Rng): Record<string, unknown> {
  return ep.fresh ? { ...ep.base, [ep.fresh]: `fz${rng.hex(8)}` } : ep.base;
}

/** Garbled JSON, wrong types, unknown fields, bad strings: every body endpoint. */
export function bodyFamilies(t: Targets, rng: Rng): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (const ep of bodyEndpoints(t)) {
    for (const [body, what] of garbledBodies(baseOf(ep, rng), rng, ep.emptyInvalid)) {
      out.push(jsonCase("json-garbled", ep, body, what));
    }
    for (const [key, value] of UNKNOWN_FIELDS) {
      const body = jsonBytes(withKey(baseOf(ep, rng), key, value));
      out.push(jsonCase("unknown-fields", ep, body, `field ${key}`));
    }
    for (const f of ep.fields) {
      for (const m of fieldMutations(f, ep.base[f.key], rng)) {
        const family = /NUL|newline|CR|tab|ESC|DEL|UTF-8|surrogate|control/.test(m.what)
          ? "bad-strings"
          : "json-types";
        const body = jsonBytes(setField(baseOf(ep, rng), f.key, m.value), m.splices);
        out.push(jsonCase(family, ep, body, `${f.key}: ${m.what}`));
      }
    }
  }
  // Whole-body replacements Incus clients have been seen to send.
  const { stopped, running } = t;
  for (const n of [stopped, running]) {
    for (
      const [body, what] of [["{}", "PUT {}"], ['{"bogus":1}', "PUT {bogus}"], [
        '{"migration":{}}',
        "PUT {migration:{}}",
      ]] as const
    ) {
      out.push({
        family: "unknown-fields",
        method: "PUT",
        target: `/1.0/instances/${n}`,
        headers: [["Content-Type", "application/json"]],
        body: te.encode(body),
        expect: "reject",
        aimed: true,
        what,
      });
    }
  }
  return out;
}

/** Random combinations: 2-3 mutations of one body at once (each alone already malformed). */
export function randomBodies(t: Targets, rng: Rng, count: number): FuzzCase[] {
  const eps = bodyEndpoints(t);
  const out: FuzzCase[] = [];
  while (out.length < count) {
    const ep = rng.pick(eps);
    let body: Record<string, unknown> = { ...baseOf(ep, rng) };
    const splices: Splice[] = [];
    const whats: string[] = [];
    for (const f of rng.sample(ep.fields, 1 + rng.int(3))) {
      const m = rng.pick(fieldMutations(f, ep.base[f.key], rng));
      body = setField(body, f.key, m.value);
      // Placeholders of one kind all take the bytes of the first splice of that kind.
      for (const s of m.splices ?? []) {
        if (!splices.some((x) => x.token === s.token)) splices.push(s);
      }
      whats.push(`${f.key}: ${m.what}`);
    }
    if (rng.int(3) === 0) {
      const [k, v] = rng.pick(UNKNOWN_FIELDS);
      body = withKey(body, k, v);
      whats.push(`field ${k}`);
    }
    out.push(jsonCase("random", ep, jsonBytes(body, splices), whats.join("; ")));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Names and paths in the URL

/** Bad names as they appear in a URL path segment (already percent-encoded). */
const SEGMENTS_BAD = [
  ...words(".. %2e%2e %2E%2e .%2e . %2e ..%2f..%2fetc%2fpasswd %2f a%2fb %2fetc%2fpasswd %00"),
  ...words("a%00b %0a a%0d%0ab %20 -x 1x x- a_b %C3%A9 %FF %ff%fe %C0%AE%C0%AE %252e%252e"),
  ...words("%E2%80%AE a%3Bb %3F %23 %5C..%5C ~ %24(id) %60id%60 %27 %22 a%09b % %zz"),
  "a".repeat(64),
  "a".repeat(5000),
  "nope",
];

/** Segments that resolve upwards once normalised (only ever sent with reads). */
const UPWARD = new Set(["..", "%2e%2e", "%2E%2e", ".%2e", ".", "%2e"]);

/** Instance sub-routes, with bodies that would be refused even for a real instance. */
function instanceRoutes(n: string): [string, string, string?][] {
  const i = `/1.0/instances/${n}`;
  return [
    ["GET", i],
    ["GET", `${i}?recursion=1`],
    ["PUT", i, '{"config":{"bogus":"1"}}'],
    ["PATCH", i, '{"config":{"bogus":"1"}}'],
    ["POST", i, '{"name":"1-bad-"}'],
    ["DELETE", i],
    ["GET", `${i}/state`],
    ["PUT", `${i}/state`, '{"action":"bogus"}'],
    ["POST", `${i}/exec`, '{"command":[]}'],
    ["GET", `${i}/console`],
    ["POST", `${i}/console`, '{"type":"bogus"}'],
    ["GET", `${i}/files?path=/etc/hostname`],
    ["POST", `${i}/files?path=/tmp/fz%00x`, "x"],
    ["DELETE", `${i}/files?path=/tmp/fz%00x`],
    ["GET", `${i}/logs`],
    ["GET", `${i}/logs/lxc.log`],
    ["DELETE", `${i}/logs/fz-missing.log`],
    ["GET", `${i}/snapshots`],
    ["POST", `${i}/snapshots`, '{"name":"a/b"}'],
    ["GET", `${i}/snapshots/s0`],
    ["PUT", `${i}/snapshots/s0`, '{"expires_at":"bogus"}'],
    ["DELETE", `${i}/snapshots/fz-missing`],
    ["GET", `${i}/backups`],
  ];
}

export function nameFamilies(t: Targets, rng: Rng): FuzzCase[] {
  const out: FuzzCase[] = [];
  const add = (method: string, target: string, body: string | undefined, what: string) => {
    out.push({
      family: "names-paths",
      method,
      target,
      headers: body === undefined ? undefined : [["Content-Type", "application/json"]],
      body: body === undefined ? undefined : te.encode(body),
      expect: method === "GET" ? "any" : "reject",
      what,
    });
  };
  for (const seg of SEGMENTS_BAD) {
    for (const [method, target, body] of instanceRoutes(seg)) {
      if (method !== "GET" && UPWARD.has(seg)) continue;
      add(method, target, body, `instance name ${short(seg)}`);
    }
    // Traversal built on a missing name never reaches a real instance.
    add("GET", `/1.0/instances/fz-missing/${seg}/state`, undefined, `path segment ${short(seg)}`);
  }
  // Upward paths from a real instance, read-only.
  for (const up of ["..", "%2e%2e", "..%2f..", "%2e%2e%2f%2e%2e%2fetc"]) {
    add("GET", `/1.0/instances/${t.running}/${up}/${t.stopped}`, undefined, `upward ${up}`);
    add("GET", `/1.0/instances/${t.stopped}/snapshots/${up}`, undefined, `upward snapshot ${up}`);
    add("GET", `/1.0/instances/${t.running}/logs/${up}`, undefined, `upward log ${up}`);
    add("GET", `/1.0/images/${up}/aliases`, undefined, `upward image ${up}`);
  }
  // Snapshot names and log file names of real instances (mutations only with names that
  // cannot resolve to anything real).
  for (const seg of SEGMENTS_BAD) {
    const s = `/1.0/instances/${t.stopped}/snapshots/${seg}`;
    add("GET", s, undefined, `snapshot name ${short(seg)}`);
    const l = `/1.0/instances/${t.running}/logs/${seg}`;
    add("GET", l, undefined, `log name ${short(seg)}`);
    if (UPWARD.has(seg) || seg === "nope") continue;
    out.push(
      ...[
        ["PUT", s, '{"expires_at":"bogus"}'],
        ["PATCH", s, '{"expires_at":"bogus"}'],
        ["POST", s, '{"name":"a/b"}'],
        ["DELETE", s, undefined],
        ["DELETE", l, undefined],
      ].map(([method, target, body]) => ({
        family: "names-paths",
        method: method!,
        target: target!,
        headers: body ? [["Content-Type", "application/json"]] as [string, string][] : undefined,
        body: body ? te.encode(body) : undefined,
        expect: "reject" as const,
        aimed: true,
        what: `snapshot/log name ${short(seg)}`,
      })),
    );
  }
  for (const file of ["..%2fconfig", "..%2f..%2f..%2fetc%2fshadow", ".hidden", "lxc.log%00"]) {
    add("GET", `/1.0/instances/${t.running}/logs/${file}`, undefined, `log file ${file}`);
  }
  // Aliases, images and operations with bad names.
  const fpUpper = t.fingerprint.toUpperCase();
  const fpBad = [
    ...SEGMENTS_BAD,
    "zz",
    "g".repeat(64),
    `${t.fingerprint}0`,
    fpUpper,
    `${t.fingerprint.slice(0, 10)}%00`,
    `${t.fingerprint}%0a`,
  ];
  for (const seg of fpBad) {
    add("GET", `/1.0/images/${seg}`, undefined, `image ${short(seg)}`);
    add("GET", `/1.0/images/${seg}/export`, undefined, `image export ${short(seg)}`);
    if (!UPWARD.has(seg) && seg !== fpUpper) {
      add("DELETE", `/1.0/images/${seg}`, undefined, `delete image ${short(seg)}`);
    }
  }
  for (const seg of [...SEGMENTS_BAD, `${t.alias}%00`, `${t.alias}%0a`, `${t.alias}%20`]) {
    add("GET", `/1.0/images/aliases/${seg}`, undefined, `alias ${short(seg)}`);
    if (UPWARD.has(seg)) continue;
    add(
      "PUT",
      `/1.0/images/aliases/${seg}`,
      JSON.stringify({ target: t.fingerprint }),
      `put alias ${short(seg)}`,
    );
    add("DELETE", `/1.0/images/aliases/${seg}`, undefined, `delete alias ${short(seg)}`);
  }
  const opIds = [
    ...SEGMENTS_BAD,
    uuidFrom(rng),
    "00000000-0000-0000-0000-000000000000",
    `${t.finishedOps[0] ?? "x"}%00`,
    `${t.finishedOps[0] ?? "x"}x`,
  ];
  for (const id of opIds) {
    add("GET", `/1.0/operations/${id}`, undefined, `operation ${short(id)}`);
    add("GET", `/1.0/operations/${id}/wait?timeout=1`, undefined, `wait ${short(id)}`);
    add("GET", `/1.0/operations/${id}/websocket?secret=x`, undefined, `websocket ${short(id)}`);
    if (!UPWARD.has(id)) add("DELETE", `/1.0/operations/${id}`, undefined, `cancel ${short(id)}`);
  }
  return safeOnly(out, t);
}

function uuidFrom(rng: Rng): string {
  const h = rng.hex(32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${
    h.slice(20)
  }`;
}

/** Paths no route serves, read and written. */
export function unknownPaths(t: Targets, rng: Rng): FuzzCase[] {
  const paths = [
    "/1.0/nothing",
    "/2.0",
    "/1.1",
    "/1.0/containers",
    "/1.0/containers/" + t.running,
    ...words("/1.0/virtual-machines /1.0/projects /1.0/projects/default /1.0/networks"),
    ...words("/1.0/storage-pools /1.0/profiles /1.0/profiles/default /1.0/certificates"),
    ...words("/1.0/cluster /1.0/warnings /1.0/metadata/configuration"),
    ...words("/1.0/instances/fz-missing/a/b/c/d"),
    `/1.0/instances/${t.running}/bogus`,
    `/1.0/instances/${t.running}/state/x`,
    `/1.0/instances/${t.running}/exec/x`,
    `/1.0/instances/${t.running}/sftp`,
    `/1.0/instances/${t.running}/metadata`,
    `/1.0/instances/${t.stopped}/snapshots/${t.snap}/x`,
    ...words("/1.0/operations/x/y/z /1.0/images/aliases/x/y /1.0/events/x /1.0/resources/x"),
    ...words("//1.0 /1.0//instances /1.0/./instances /1.0/instances/ /1.0/"),
    ...words("/%2e%2e/%2e%2e/etc/passwd /../../etc/passwd /1.0/../../../etc/shadow /1.0%00"),
    ...words("/1.0%2f /1.0;x /1.0% /1.0%zz /1.0? /1.0?&&&=&= /1.0?recursion /1.0?%00=%00"),
    `/${"a".repeat(5000)}`,
    `/1.0/${"a/".repeat(2500)}`,
    "http://evil.example/1.0",
    "http://localhost:None/1.0",
    "*",
  ];
  for (let i = 0; i < 20; i++) {
    const len = 1 + rng.int(40);
    let p = "/";
    for (let j = 0; j < len; j++) p += rng.pick([..."abcz019-._~!$&'()*+,;=:@/%"]);
    paths.push(p.replace(/%(?![0-9a-fA-F]{2})/g, "%25"));
  }
  const out: FuzzCase[] = [];
  for (const p of paths) {
    const protocol = p === "*";
    out.push({
      family: "unknown-paths",
      method: "GET",
      target: p,
      expect: "any",
      protocol,
      what: `GET ${short(p)}`,
    });
    if (
      p.includes("..") || p.includes("%2e") || p.includes("/./") || p.endsWith("/") ||
      p.includes("//") || protocol || p.startsWith("http")
    ) continue;
    for (const method of ["POST", "PUT", "DELETE"]) {
      out.push({
        family: "unknown-paths",
        method,
        target: p,
        headers: [["Content-Type", "application/json"]],
        body: te.encode('{"bogus":'),
        expect: "reject",
        aimed: true,
        what: `${method} ${short(p)}`,
      });
    }
  }
  return safeOnly(out, t);
}

// ---------------------------------------------------------------------------------------------
// Methods

/** Every route and the methods it serves (HEAD is served by GET routes). */
function routes(t: Targets): [string, string[]][] {
  const i = `/1.0/instances/${t.stopped}`;
  const op = t.finishedOps[0] ?? "x";
  return [
    ["/", ["GET"]],
    ["/1.0", ["GET", "PUT", "PATCH"]],
    ["/1.0/resources", ["GET"]],
    ["/1.0/instances", ["GET", "POST"]],
    [i, ["GET", "PUT", "PATCH", "POST", "DELETE"]],
    [`${i}/state`, ["GET", "PUT"]],
    [`${i}/exec`, ["POST"]],
    [`${i}/console`, ["GET", "POST"]],
    [`${i}/files?path=/etc/hostname`, ["GET", "POST", "DELETE"]],
    [`${i}/snapshots`, ["GET", "POST"]],
    [`${i}/snapshots/${t.snap}`, ["GET", "POST", "PUT", "PATCH", "DELETE"]],
    [`${i}/backups`, ["GET", "POST"]],
    [`/1.0/instances/${t.running}/logs`, ["GET"]],
    [`/1.0/instances/${t.running}/logs/${t.logFile}`, ["GET", "DELETE"]],
    ["/1.0/operations", ["GET"]],
    [`/1.0/operations/${op}`, ["GET", "DELETE"]],
    [`/1.0/operations/${op}/wait?timeout=1`, ["GET"]],
    [`/1.0/operations/${op}/websocket`, ["GET"]],
    ["/1.0/events", ["GET"]],
    ["/1.0/images", ["GET", "POST"]],
    ["/1.0/images/aliases", ["GET", "POST"]],
    [`/1.0/images/aliases/${t.alias}`, ["GET", "PUT", "DELETE"]],
    [`/1.0/images/${t.fingerprint}`, ["GET", "DELETE"]],
    [`/1.0/images/${t.fingerprint}/export`, ["GET"]],
  ];
}

const METHODS = [
  ...words("GET POST PUT PATCH DELETE OPTIONS TRACE PROPFIND FUZZ get Delete"),
];

export function methodFamily(t: Targets): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (const [path, allowed] of routes(t)) {
    for (const method of METHODS) {
      if (allowed.includes(effectiveMethod(method))) continue;
      const withBody = !["GET", "get", "TRACE"].includes(method);
      out.push({
        family: "methods",
        method,
        target: path,
        headers: withBody ? [["Content-Type", "application/json"]] : undefined,
        body: withBody ? te.encode('{"bogus":') : undefined,
        expect: "reject",
        aimed: true,
        what: `${method} on ${path.split("?")[0]}`,
      });
    }
    // HEAD only reads (and has no body to check).
    out.push({ family: "methods", method: "HEAD", target: path, expect: "any", what: "HEAD" });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Query values

const RECURSION_BAD = [
  ...words("abc -1 1.5 99 1e3"),
  "",
  ...words("%00 NaN Infinity 0x1 %201 1%20 1%0a 2%00"),
  "9".repeat(400),
  "%EF%BC%91",
  "%FF",
  "1&recursion=abc",
  "-0",
];

const TIMEOUT_BAD = [
  ...words("NaN abc -5 1e309 Infinity -Infinity"),
  "",
  "%00",
  "9".repeat(400),
  "0x10",
  "1%0a",
  "-1e-309",
  "1,5",
];

function filtersBad(): string[] {
  const clauses = "status%20eq%20a%20and%20".repeat(2000);
  return [
    ...words("status status%20eq status%20xx%20Running ( ) %22 %27 %5C not not%20not and"),
    ...words("or%20or status%20eq%20Running%20and status%20eq%20%27unterminated"),
    ...words("status%20eq%20%22a%5C"),
    "a".repeat(5000),
    "%00",
    "status%20eq%20%00",
    "%FF",
    "config.%0a%20eq%201",
    `${clauses}status%20eq%20a`,
    "(".repeat(2000),
    "%22".repeat(1001),
    "name%20eq%20" + "%5C".repeat(3000),
    "config.user.canary%20eq%201%20or",
    "%E2%80%AE%20eq%20x",
  ];
}

export function queryFamily(t: Targets, rng: Rng): FuzzCase[] {
  const out: FuzzCase[] = [];
  const add = (target: string, what: string, expect: "any" | "reject" = "any") =>
    out.push({ family: "query", method: "GET", target, expect, what });
  const listing = [
    "/1.0/instances",
    `/1.0/instances/${t.stopped}`,
    `/1.0/instances/${t.stopped}/snapshots`,
    "/1.0/images",
    "/1.0/images/aliases",
    "/1.0/operations",
  ];
  for (const base of listing) {
    for (const r of RECURSION_BAD) add(`${base}?recursion=${r}`, `recursion=${short(r)}`);
  }
  for (const base of ["/1.0/instances", "/1.0/images"]) {
    for (const f of filtersBad()) {
      add(`${base}?filter=${f}`, `filter=${short(f)}`);
      add(`${base}?recursion=${rng.pick(["1", "2"])}&filter=${f}`, `filter=${short(f)}`);
    }
  }
  for (const q of ["project=nope", "project=%00", "all-projects=maybe", "target=%0a", "x=y&x=z"]) {
    add(`/1.0/instances?${q}`, q);
    add(`/1.0/instances/${t.running}/state?${q}`, q);
  }
  for (const id of [...t.finishedOps.slice(0, 2), "fz-missing"]) {
    for (const v of TIMEOUT_BAD) {
      add(`/1.0/operations/${id}/wait?timeout=${v}`, `timeout=${short(v)}`);
    }
  }
  for (const ty of ["bogus", "%00", "operation,%0a", "lifecycle,,x", "a".repeat(5000), "%FF"]) {
    add(`/1.0/events?type=${ty}`, `events type=${short(ty)} without upgrade`, "reject");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files API

export function filesFamily(t: Targets): FuzzCase[] {
  const out: FuzzCase[] = [];
  const long = "a".repeat(300);
  const readPaths = [
    "",
    ...words("/ .. ../../../../etc/shadow %2e%2e/%2e%2e/etc/shadow /proc/self/root/etc/shadow"),
    ...words("/proc/1/root/etc/shadow"),
    `/${"a".repeat(5000)}`,
    `/tmp/${long}`,
    `/tmp/${"a/".repeat(2500)}`,
    ...words("//etc//hostname /etc/hostname/ /etc/hostname/. /etc/hostname%00 %00"),
    ...words("/etc/%0Ahostname /%FF ~ %24(id) /etc/passwd%00.png /etc/../../../../../.."),
    ...words("/tmp/fz-missing/../../etc/hostname"),
  ];
  for (const n of [t.stopped, t.running]) {
    const files = `/1.0/instances/${n}/files`;
    for (const p of readPaths) {
      out.push({
        family: "files",
        method: "GET",
        target: `${files}?path=${p}`,
        expect: p === "" ? "reject" : "any",
        what: `read ${short(p)}`,
      });
    }
    out.push({ family: "files", method: "GET", target: files, expect: "reject", what: "no path" });
    // Deletes: only of the root, dots, missing files and unrepresentable paths.
    for (
      const p of [
        ...words("/ /. /.. // /../.."),
        "",
        "/tmp/fz-missing-file",
        "/../../fz-missing-file",
        "/tmp/a%00b",
        `/tmp/${long}`,
        `/${"a".repeat(5000)}`,
      ]
    ) {
      out.push({
        family: "files",
        method: "DELETE",
        target: `${files}?path=${p}`,
        expect: "reject",
        aimed: true,
        what: `delete ${short(p)}`,
      });
    }
    // Writes: an unrepresentable path, or a header that cannot be honoured.
    const push = (p: string, headers: [string, string][], what: string, body = "fuzz") =>
      out.push({
        family: "files",
        method: "POST",
        target: `${files}?path=${p}`,
        headers: [["Content-Type", "application/octet-stream"], ...headers],
        body: te.encode(body),
        expect: "reject",
        aimed: true,
        what,
      });
    push("/tmp/a%00b", [], "NUL in path");
    push(`/tmp/${long}`, [], "300-char component");
    push(`/${"a".repeat(5000)}`, [], "5000-char path");
    push("", [], "empty path");
    push("/", [], "write over /");
    push("/..", [], "write over /..");
    for (const prefix of ["X-Incus-", "X-LXD-"]) {
      const bad: [string, string][] = [
        ["type", "fifo"],
        ["type", "FILE"],
        ["type", "file%00"],
        ["mode", "abc"],
        ["mode", "99999999999999999999999"],
        ["mode", "0999"],
        ["mode", "-5"],
        ["mode", "0x"],
        ["mode", "1e3"],
        ["uid", "-2"],
        ["uid", "abc"],
        ["uid", "4294967295"],
        ["uid", "1.5"],
        ["uid", "65536"],
        ["gid", "-2"],
        ["gid", "99999999999"],
        ["gid", "65536"],
        ["write", "truncate"],
        ["write", "APPEND"],
      ];
      for (const [k, v] of bad) push("/tmp/fz-file", [[`${prefix}${k}`, v]], `${prefix}${k}: ${v}`);
    }
  }
  return out;
}

/** Special files: devices, a fifo, /proc entries (on the running instance, and the stopped). */
export function specialFilesFamily(t: Targets): FuzzCase[] {
  const paths = [
    "/dev/zero",
    "/dev/random",
    "/dev/null",
    "/dev/ptmx",
    t.fifo,
    t.zeroLink,
    "/proc/self/mem",
    "/proc/1/mem",
    "/proc/self/fd/0",
    "/proc/self/environ",
  ];
  const out: FuzzCase[] = [];
  for (const n of [t.stopped, t.running]) {
    for (const p of paths) {
      out.push({
        family: "special-files",
        method: "GET",
        target: `/1.0/instances/${n}/files?path=${p}`,
        expect: "any",
        what: `read ${p}`,
      });
      out.push({
        family: "special-files",
        method: "HEAD",
        target: `/1.0/instances/${n}/files?path=${p}`,
        expect: "any",
        what: `stat ${p}`,
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Websockets, Host headers, raw HTTP

export const WS_KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** Upgrade headers; a null field leaves that header out. */
export function wsHeaders(
  opts: { key?: string | null; version?: string | null; upgrade?: string; connection?: string } =
    {},
): [string, string][] {
  const h: [string, string][] = [
    ["Upgrade", opts.upgrade ?? "websocket"],
    ["Connection", opts.connection ?? "Upgrade"],
  ];
  if (opts.key !== null) h.push(["Sec-WebSocket-Key", opts.key ?? WS_KEY]);
  if (opts.version !== null) h.push(["Sec-WebSocket-Version", opts.version ?? "13"]);
  return h;
}

/** Broken upgrade requests (each must be refused), and the one valid shape. */
const WS_BROKEN: [Parameters<typeof wsHeaders>[0], string][] = [
  [{ key: null }, "no Sec-WebSocket-Key"],
  [{ key: "" }, "empty Sec-WebSocket-Key"],
  [{ key: "not base64!!" }, "Sec-WebSocket-Key not base64"],
  [{ key: btoa("x".repeat(40)) }, "Sec-WebSocket-Key of 40 bytes"],
  [{ version: null }, "no Sec-WebSocket-Version"],
  [{ version: "8" }, "Sec-WebSocket-Version 8"],
  [{ version: "99" }, "Sec-WebSocket-Version 99"],
  [{ version: "abc" }, "Sec-WebSocket-Version abc"],
  [{ connection: "close" }, "Connection: close"],
  [{ connection: "keep-alive" }, "Connection: keep-alive"],
  [{ upgrade: "h2c" }, "Upgrade: h2c"],
  [{ upgrade: "websocket2" }, "Upgrade: websocket2"],
  [{ key: null, version: null }, "Upgrade without key or version"],
];

export function websocketFamily(t: Targets): FuzzCase[] {
  const out: FuzzCase[] = [];
  const add = (c: Omit<FuzzCase, "family">) => out.push({ family: "websocket", ...c });
  const events = "/1.0/events";
  const op = t.finishedOps[0] ?? "x";
  const targets: [string, string][] = [
    [events, "events"],
    [`${events}?type=operation`, "events?type=operation"],
    [`/1.0/operations/${uuidFromSeed(op)}/websocket?secret=abc`, "unknown operation"],
    [`/1.0/operations/${op}/websocket?secret=abc`, "finished operation"],
  ];
  if (t.liveOp) {
    const s = Object.values(t.liveOp.secrets)[0];
    targets.push([`/1.0/operations/${t.liveOp.id}/websocket?secret=${s}`, "live op, right secret"]);
  }
  for (const [target, where] of targets) {
    for (const [opts, what] of WS_BROKEN) {
      add({
        method: "GET",
        target,
        headers: wsHeaders(opts),
        expect: "reject",
        what: `${where}: ${what}`,
      });
    }
    // An upgrade with a body: the HTTP layer itself may refuse it with a bare 400.
    add({
      method: "POST",
      target,
      headers: [...wsHeaders(), ["Content-Type", "application/json"]],
      body: te.encode("{"),
      expect: "reject",
      protocol: true,
      what: `${where}: POST upgrade`,
    });
  }
  add({
    method: "GET",
    target: events,
    headers: wsHeaders(),
    expect: "any",
    what: "valid upgrade",
  });
  add({
    method: "GET",
    target: events,
    headers: wsHeaders({ upgrade: "WebSocket", connection: "keep-alive, Upgrade" }),
    expect: "any",
    what: "valid upgrade, other spelling",
  });
  for (const ty of ["bogus", "%00", "operation,%0a", "a".repeat(5000), "%FF", "lifecycle,x"]) {
    add({
      method: "GET",
      target: `${events}?type=${ty}`,
      headers: wsHeaders(),
      expect: "reject",
      what: `events type=${short(ty)}`,
    });
  }
  if (t.liveOp) {
    const { id, secrets } = t.liveOp;
    const right = Object.values(secrets)[0];
    const wrong = [
      "",
      "x",
      `${right}x`,
      right.slice(0, -1),
      right.toUpperCase(),
      `${right}%00`,
      `%00${right}`,
      "a".repeat(5000),
      `${right}%0a`,
      `${right.slice(0, 10)}%FF`,
    ];
    for (const w of wrong) {
      add({
        method: "GET",
        target: `/1.0/operations/${id}/websocket?secret=${w}`,
        headers: wsHeaders(),
        expect: "reject",
        what: `wrong secret ${short(w)}`,
      });
    }
    add({
      method: "GET",
      target: `/1.0/operations/${id}/websocket`,
      headers: wsHeaders(),
      expect: "reject",
      what: "no secret",
    });
    add({
      method: "GET",
      target: `/1.0/operations/${id}/websocket?secret=${right}`,
      expect: "reject",
      what: "right secret without upgrade",
    });
  }
  // Upgrade headers on plain endpoints are ignored (or refused), never a crash.
  for (const p of ["/1.0", `/1.0/instances/${t.running}/console`, "/1.0/operations"]) {
    add({ method: "GET", target: p, headers: wsHeaders(), expect: "any", what: `upgrade on ${p}` });
    add({
      method: "GET",
      target: p,
      headers: wsHeaders({ key: null }),
      expect: "any",
      what: `keyless upgrade on ${p}`,
    });
  }
  return out;
}

function uuidFromSeed(s: string): string {
  return `${s.replace(/[^0-9a-f]/g, "").slice(0, 8).padEnd(8, "0")}-dead-4bad-8bad-000000000000`;
}

const HOSTS: (string | null)[] = [
  "localhost:None",
  "",
  null,
  ...words("[::1 [::1]:None localhost: : localhost:99999 localhost:-1"),
  "local host",
  "h".repeat(5000),
  ...words("user@localhost localhost/x localhost?x localhost#x http://localhost [] * .."),
  ...words("localhost:0x50 a:b:c"),
  "\xe9t\xe9",
];

export function hostFamily(t: Targets): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (const host of HOSTS) {
    const what = `Host ${host === null ? "(none)" : short(host)}`;
    const add = (c: Omit<FuzzCase, "family" | "host" | "what">, w: string) =>
      out.push({ family: "host", host, what: `${what}, ${w}`, ...c });
    add({ method: "GET", target: "/1.0", expect: "any" }, "GET /1.0");
    add({ method: "GET", target: "/1.0/instances?recursion=1", expect: "any" }, "list");
    add({ method: "GET", target: "/1.0/events", headers: wsHeaders(), expect: "any" }, "events");
    add({
      method: "GET",
      target: "/1.0/events",
      headers: wsHeaders({ key: null }),
      expect: "reject",
    }, "events without key");
    add({
      method: "GET",
      target: `/1.0/operations/${t.finishedOps[0] ?? "x"}/websocket?secret=x`,
      headers: wsHeaders(),
      expect: "reject",
    }, "operation websocket");
    add({
      method: "PATCH",
      target: `/1.0/instances/${t.stopped}`,
      headers: [["Content-Type", "application/json"]],
      body: te.encode('{"config":{"bogus":"1"}}'),
      expect: "reject",
      aimed: true,
    }, "PATCH");
    add({
      method: "POST",
      target: `/1.0/instances/${t.running}/exec`,
      headers: [["Content-Type", "application/json"]],
      body: te.encode('{"command":[]}'),
      expect: "reject",
      aimed: true,
    }, "exec");
  }
  // Two Host headers.
  out.push({
    family: "host",
    method: "GET",
    target: "/1.0/events",
    headers: [["Host", "localhost:None"], ...wsHeaders()],
    expect: "any",
    protocol: true,
    what: "two Host headers, events",
  });
  return out;
}

/** Requests that are not valid HTTP/1.1 (sent raw): only a crash, a hang or a 5xx is a bug. */
export function protocolFamily(t: Targets): { raw: Uint8Array; what: string }[] {
  const ok = "Host: outpost\r\nConnection: close\r\n";
  const list: [string | Uint8Array, string][] = [
    [`GET /1.0/\xff HTTP/1.1\r\n${ok}\r\n`, "raw 0xff in path"],
    [`GET /1.0/a\0b HTTP/1.1\r\n${ok}\r\n`, "raw NUL in path"],
    [`GET /1.0 x HTTP/1.1\r\n${ok}\r\n`, "space in path"],
    [`GET /1.0\tx HTTP/1.1\r\n${ok}\r\n`, "tab in path"],
    [`GET /1.0 HTTP/1.1\r\nX-A: a\rb\r\n${ok}\r\n`, "bare CR in a header"],
    [`GET /1.0 HTTP/1.1\r\nX-A: a\0b\r\n${ok}\r\n`, "NUL in a header"],
    [`GET /1.0 HTTP/1.1\r\nno colon\r\n${ok}\r\n`, "header without colon"],
    [`GET /1.0 HTTP/1.1\r\nX A: b\r\n${ok}\r\n`, "space in header name"],
    [`GET /1.0 HTTP/1.1\r\n : b\r\n${ok}\r\n`, "empty header name"],
    [`GET /1.0 HTTP/1.2\r\n${ok}\r\n`, "HTTP/1.2"],
    [`GET /1.0 HTTP/2.0\r\n${ok}\r\n`, "HTTP/2.0"],
    [`GET /1.0 HTTP/9.9\r\n${ok}\r\n`, "HTTP/9.9"],
    [`GET /1.0 http/1.1\r\n${ok}\r\n`, "lower-case version"],
    [`GET /1.0\r\n\r\n`, "HTTP/0.9 style"],
    [`\r\n\r\n`, "empty request"],
    [`G\x01T /1.0 HTTP/1.1\r\n${ok}\r\n`, "control char in method"],
    [`CONNECT /1.0 HTTP/1.1\r\n${ok}\r\n`, "CONNECT with a path"],
    [`CONNECT localhost:None HTTP/1.1\r\n${ok}\r\n`, "CONNECT localhost:None"],
    [`OPTIONS * HTTP/1.1\r\n${ok}\r\n`, "OPTIONS *"],
    [`GET http://x:None/1.0 HTTP/1.1\r\n${ok}\r\n`, "absolute-form with bad port"],
    [`GET //evil/1.0 HTTP/1.1\r\n${ok}\r\n`, "network-path target"],
    [`GET /1.0#frag HTTP/1.1\r\n${ok}\r\n`, "fragment in target"],
    [
      `PUT /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Content-Length: abc\r\n\r\n[]`,
      "Content-Length abc",
    ],
    [
      `PUT /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Content-Length: -1\r\n\r\n[]`,
      "Content-Length -1",
    ],
    [
      `PUT /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]x`,
      "two Content-Lengths",
    ],
    [
      `PUT /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Content-Length: 1, 2\r\n\r\n[]`,
      "Content-Length list",
    ],
    [
      `PATCH /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Transfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n`,
      "bad chunk size",
    ],
    [
      `PATCH /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n[]\r\n0\r\n\r\n`,
      "chunked and Content-Length",
    ],
    [
      `PATCH /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n`,
      "unknown transfer coding",
    ],
    [
      `PATCH /1.0/instances/${t.stopped} HTTP/1.1\r\n${ok}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n[]\r\n0\r\n\r\n`,
      "chunk size overflow",
    ],
    [`GET /${"a".repeat(100_000)} HTTP/1.1\r\n${ok}\r\n`, "100 kB request target"],
    [`GET /1.0 HTTP/1.1\r\nX-Big: ${"b".repeat(100_000)}\r\n${ok}\r\n`, "100 kB header"],
    [
      `GET /1.0 HTTP/1.1\r\n${
        Array.from({ length: 2000 }, (_, i) => `X-H${i}: v\r\n`).join("")
      }${ok}\r\n`,
      "2000 headers",
    ],
    [
      `GET /1.0/events HTTP/1.0\r\n${ok}Upgrade: websocket\r\nSec-WebSocket-Key: ${WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      "HTTP/1.0 upgrade",
    ],
  ];
  return list.map(([raw, what]) => ({
    raw: typeof raw === "string" ? latin1(raw) : raw,
    what,
  }));
}

/** Huge bodies, arrays, nesting and uploads. */
export function hugeFamily(t: Targets, rng: Rng): FuzzCase[] {
  const MB = 2 ** 20;
  const big = "a".repeat(20 * MB);
  const json = (method: string, target: string, body: Uint8Array, what: string): FuzzCase => ({
    family: "huge",
    method,
    target,
    headers: [["Content-Type", "application/json"]],
    body,
    expect: "reject",
    aimed: true,
    what,
  });
  const i = (n: string) => `/1.0/instances/${n}`;
  const nestedArrays = te.encode("[".repeat(100_000) + "]".repeat(100_000));
  const nestedObjects = te.encode('{"a":'.repeat(100_000) + "1" + "}".repeat(100_000));
  const manyKeys = JSON.stringify({
    config: Object.fromEntries(
      Array.from({ length: 400_000 }, (_, k) => [`user.k${k}`, "v".repeat(30)]),
    ),
  });
  const cases: FuzzCase[] = [
    json("POST", "/1.0/instances", te.encode(JSON.stringify({ name: big })), "20 MB name"),
    json(
      "PATCH",
      i(t.stopped),
      te.encode(JSON.stringify({ config: { "user.big": big } })),
      "20 MB config value",
    ),
    json(
      "PUT",
      `${i(t.running)}/state`,
      te.encode(JSON.stringify({ action: "start", x: big })),
      "20 MB unknown field",
    ),
    json("PATCH", i(t.stopped), te.encode(manyKeys), "400k config keys (20 MB)"),
    json(
      "POST",
      `${i(t.running)}/exec`,
      te.encode(JSON.stringify({ command: Array(1_000_000).fill("x") })),
      "1M-element argv",
    ),
    json(
      "PATCH",
      i(t.stopped),
      te.encode(JSON.stringify({ profiles: Array(1_000_000).fill("default") })),
      "1M-element profiles",
    ),
    json("PUT", `${i(t.running)}/state`, nestedArrays, "100k nested arrays"),
    json(
      "PATCH",
      i(t.stopped),
      te.encode(`{"config":${"[".repeat(100_000)}${"]".repeat(100_000)}}`),
      "100k nested arrays in config",
    ),
    json("POST", "/1.0/images/aliases", nestedObjects, "100k nested objects"),
    json(
      "PUT",
      "/1.0",
      te.encode(`{"config":{"user.x":${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}}}`),
      "50k nested objects in a config value",
    ),
    json("POST", "/1.0/nothing", te.encode(big), "20 MB to an unknown path"),
    json("PUT", i(t.stopped), rngBytes(20 * MB, rng.int(2 ** 31)), "20 MB of bytes"),
    {
      family: "huge",
      method: "POST",
      target: `${i(t.stopped)}/files?path=/tmp/fz-big`,
      headers: [["X-Incus-mode", "abc"]],
      body: rngBytes(20 * MB, rng.int(2 ** 31)),
      expect: "reject",
      aimed: true,
      what: "20 MB upload with a bad mode",
    },
    {
      family: "huge",
      method: "POST",
      target: "/1.0/images",
      headers: [["Content-Type", "application/octet-stream"]],
      body: rngBytes(20 * MB, rng.int(2 ** 31)),
      expect: "reject",
      aimed: true,
      what: "20 MB image that is not an image",
    },
    {
      family: "huge",
      method: "POST",
      target: "/1.0/images",
      headers: [["Content-Type", "application/octet-stream"]],
      body: Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff),
      expect: "reject",
      aimed: true,
      what: "truncated gzip image",
    },
    {
      family: "huge",
      method: "POST",
      target: "/1.0/images",
      headers: [["Content-Type", "application/octet-stream"], ["X-Incus-filename", "../../x%00"]],
      body: te.encode("not an image"),
      expect: "reject",
      aimed: true,
      what: "image with a traversal filename",
    },
    {
      family: "huge",
      method: "POST",
      target: "/1.0/images",
      headers: [["Content-Type", "application/json"]],
      body: te.encode('{"source":{"type":"url","url":"http://127.0.0.1:1/x"}}'),
      expect: "reject",
      aimed: true,
      what: "image from a URL",
    },
    {
      family: "huge",
      method: "POST",
      target: "/1.0/images",
      headers: [["Content-Type", "multipart/form-data; boundary=x"]],
      body: te.encode("--x--"),
      expect: "reject",
      aimed: true,
      what: "multipart image",
    },
    {
      family: "huge",
      method: "POST",
      target: "/1.0/images",
      expect: "reject",
      aimed: true,
      what: "empty image upload",
    },
  ];
  return cases;
}

function rngBytes(n: number, seed: number): Uint8Array {
  const r = mulberry32(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = (r() * 4294967296) >>> 0;
    out[i] = v & 0xff;
    out[i + 1] = (v >>> 8) & 0xff;
    out[i + 2] = (v >>> 16) & 0xff;
    out[i + 3] = v >>> 24;
  }
  // Never valid JSON, whatever the bytes.
  out[0] = 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The harness's own guard: no case may reach a real object by a path that only becomes real
// once decoded or normalised (a `Delete` method, `%2e%2e`, `%2f`...): such a case would change
// state by a request that is valid, and blame the daemon for it.

/** Fetch upper-cases these methods whatever their spelling (`Delete` is DELETE). */
const NORMALISED = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];

export function effectiveMethod(method: string): string {
  const upper = method.toUpperCase();
  return NORMALISED.includes(upper) ? upper : method;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function dotSegments(segs: string[]): string[] {
  const out: string[] = [];
  for (const s of segs) {
    if (s === "..") out.pop();
    else if (s !== "." && s !== "") out.push(s);
  }
  return out;
}

/** The segment lists a server might route `target` as. */
function routings(target: string): string[][] {
  const raw = target.split("?")[0].split("#")[0];
  const paths = new Set([raw]);
  try {
    paths.add(new URL(raw, "http://h").pathname);
  } catch { /* not a URL path */ }
  const out: string[][] = [];
  for (const p of paths) {
    const segs = p.split("/").filter((s) => s !== "");
    out.push(segs, segs.map(decode), decode(p).split("/").filter((s) => s !== ""));
    out.push(dotSegments(decode(p).split("/")));
  }
  return out;
}

/** Whether METHOD on these segments is a state-changing route on a real object. */
function changesReal(method: string, segs: string[], t: Targets): boolean {
  const [v, kind, a, b, c] = segs;
  const n = segs.length;
  const is = (...ms: string[]) => ms.includes(method);
  if (v !== "1.0") return false;
  if (n === 1) return is("PUT", "PATCH");
  if (kind === "instances") {
    if (n === 2) return is("POST");
    if (a !== t.stopped && a !== t.running) return false;
    if (n === 3) return is("PUT", "PATCH", "POST", "DELETE");
    if (n === 4) {
      return (b === "state" && is("PUT")) ||
        (["exec", "console", "snapshots", "backups"].includes(b) && is("POST")) ||
        (b === "files" && is("POST", "DELETE"));
    }
    return n === 5 &&
      ((b === "snapshots" && c === t.snap && is("POST", "PUT", "PATCH", "DELETE")) ||
        (b === "logs" && c === t.logFile && is("DELETE")));
  }
  if (kind === "images") {
    if (n === 2) return is("POST");
    if (a === "aliases") {
      return n === 3 ? is("POST") : n === 4 && b === t.alias && is("PUT", "DELETE");
    }
    return n === 3 && is("DELETE") && /^[0-9a-f]{1,64}$/.test(a) && t.fingerprint.startsWith(a);
  }
  if (kind === "operations") {
    return n === 3 && is("DELETE") && (t.finishedOps.includes(a) || t.liveOp?.id === a);
  }
  return false;
}

/**
 * Throws (a bug in a generator) when a case could change a real object other than on purpose:
 * cases aimed at one must name it literally, with input that is malformed by construction.
 */
export function checkCase(c: FuzzCase, t: Targets): void {
  if (unsafe(c, t)) {
    throw new Error(`Harness bug: case may change a real object: ${c.method} ${c.target}`);
  }
}

function unsafe(c: FuzzCase, t: Targets): boolean {
  const method = effectiveMethod(c.method);
  if (!routings(c.target).some((segs) => changesReal(method, segs, t))) return false;
  const literal = !/%|\/\.\.?(\/|$)|\/\/|\/$/.test(c.target.split("?")[0]);
  return !c.aimed || !literal;
}

/** Drops the cases whose path could reach a real object once decoded or normalised. */
function safeOnly(cases: FuzzCase[], t: Targets): FuzzCase[] {
  return cases.filter((c) => !unsafe(c, t));
}
