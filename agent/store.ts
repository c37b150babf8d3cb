/**
 * The daemon's embedded state: SQLite (node:sqlite, WAL) with versioned migrations.
 * Rows are validated with zod on the way out, so a damaged row is a clear error, not a crash later.
 * Each SQL statement is prepared once and reused: a node:sqlite statement prepared per query is
 * not freed until the database closes, so the daemon's memory grew with every request.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { z } from "zod";

const MIGRATIONS: string[] = [
  // 1: the first schema
  `CREATE TABLE instances (
     name TEXT PRIMARY KEY,
     type TEXT NOT NULL,
     architecture TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     config TEXT NOT NULL,
     devices TEXT NOT NULL,
     profiles TEXT NOT NULL,
     ephemeral INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     last_used_at TEXT NOT NULL
   );
   CREATE TABLE images (
     fingerprint TEXT PRIMARY KEY,
     type TEXT NOT NULL,
     architecture TEXT NOT NULL,
     filename TEXT NOT NULL,
     size INTEGER NOT NULL,
     properties TEXT NOT NULL,
     public INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     uploaded_at TEXT NOT NULL,
     last_used_at TEXT NOT NULL
   );
   CREATE TABLE aliases (
     name TEXT PRIMARY KEY,
     target TEXT NOT NULL REFERENCES images(fingerprint) ON DELETE CASCADE,
     description TEXT NOT NULL DEFAULT ''
   );
   CREATE TABLE operations (
     id TEXT PRIMARY KEY,
     body TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE server_config (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );`,
  // 2: snapshots, each a copy of its instance's writable fields at the time it was taken
  `CREATE TABLE snapshots (
     instance TEXT NOT NULL REFERENCES instances(name) ON DELETE CASCADE ON UPDATE CASCADE,
     name TEXT NOT NULL,
     architecture TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     config TEXT NOT NULL,
     devices TEXT NOT NULL,
     profiles TEXT NOT NULL,
     ephemeral INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     expires_at TEXT NOT NULL,
     PRIMARY KEY (instance, name)
   );`,
  // 3: the trust store, certificates by the SHA-256 of their DER
  `CREATE TABLE certificates (
     fingerprint TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     type TEXT NOT NULL,
     restricted INTEGER NOT NULL DEFAULT 0,
     projects TEXT NOT NULL,
     certificate TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT ''
   );`,
  // 4: the hub this host is enrolled with (one row at most)
  `CREATE TABLE fleet (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     hub_urls TEXT NOT NULL,
     hub_certificate TEXT NOT NULL,
     name TEXT NOT NULL,
     labels TEXT NOT NULL,
     enrolled_at TEXT NOT NULL
   );`,
  // 5: profiles (the daemon makes `default` at start when it is missing)
  `CREATE TABLE profiles (
     name TEXT PRIMARY KEY,
     description TEXT NOT NULL DEFAULT '',
     config TEXT NOT NULL,
     devices TEXT NOT NULL
   );`,
  // 6: managed networks (bridges)
  `CREATE TABLE networks (
     name TEXT PRIMARY KEY,
     description TEXT NOT NULL DEFAULT '',
     type TEXT NOT NULL,
     config TEXT NOT NULL
   );`,
  // 7: storage pools besides the default one, and custom volumes on any pool
  `CREATE TABLE storage_pools (
     name TEXT PRIMARY KEY,
     driver TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     config TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE storage_volumes (
     pool TEXT NOT NULL,
     name TEXT NOT NULL,
     content_type TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     config TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (pool, name)
   );`,
];

const stringMap = z.record(z.string(), z.string());
const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((s, ctx) => {
    try {
      return JSON.parse(s);
    } catch {
      ctx.addIssue({ code: "custom", message: "not JSON" });
      return z.NEVER;
    }
  }).pipe(schema);

export const DeviceSchema = stringMap;
export type Device = z.infer<typeof DeviceSchema>;

const InstanceRowSchema = z.object({
  name: z.string(),
  type: z.enum(["container", "virtual-machine"]),
  architecture: z.string(),
  description: z.string(),
  config: json(stringMap),
  devices: json(z.record(z.string(), DeviceSchema)),
  profiles: json(z.array(z.string())),
  ephemeral: z.number().transform((n) => n !== 0),
  created_at: z.string(),
  last_used_at: z.string(),
});
export type InstanceRecord = z.infer<typeof InstanceRowSchema>;

const ProfileRowSchema = z.object({
  name: z.string(),
  description: z.string(),
  config: json(stringMap),
  devices: json(z.record(z.string(), DeviceSchema)),
});
export type ProfileRecord = z.infer<typeof ProfileRowSchema>;

const NetworkRowSchema = z.object({
  name: z.string(),
  description: z.string(),
  type: z.enum(["bridge"]),
  config: json(stringMap),
});
export type NetworkRecord = z.infer<typeof NetworkRowSchema>;

const PoolRowSchema = z.object({
  name: z.string(),
  driver: z.enum(["dir", "btrfs"]),
  description: z.string(),
  config: json(stringMap),
  created_at: z.string(),
});
export type PoolRecord = z.infer<typeof PoolRowSchema>;

const VolumeRowSchema = z.object({
  pool: z.string(),
  name: z.string(),
  content_type: z.enum(["filesystem", "block"]),
  description: z.string(),
  config: json(stringMap),
  created_at: z.string(),
});
export type VolumeRecord = z.infer<typeof VolumeRowSchema>;

const ImageRowSchema = z.object({
  fingerprint: z.string(),
  type: z.enum(["container", "virtual-machine"]),
  architecture: z.string(),
  filename: z.string(),
  size: z.number(),
  properties: json(stringMap),
  public: z.number().transform((n) => n !== 0),
  created_at: z.string(),
  uploaded_at: z.string(),
  last_used_at: z.string(),
});
export type ImageRecord = z.infer<typeof ImageRowSchema>;

/** A snapshot keeps its instance's writable fields as they were when it was taken. */
const SnapshotRowSchema = InstanceRowSchema.omit({ type: true, last_used_at: true }).extend({
  instance: z.string(),
  expires_at: z.string(),
});
export type SnapshotRecord = z.infer<typeof SnapshotRowSchema>;

const AliasRowSchema = z.object({ name: z.string(), target: z.string(), description: z.string() });
export type AliasRecord = z.infer<typeof AliasRowSchema>;

const CertificateRowSchema = z.object({
  fingerprint: z.string(),
  name: z.string(),
  type: z.enum(["client", "metrics"]),
  restricted: z.number().transform((n) => n !== 0),
  projects: json(z.array(z.string())),
  certificate: z.string(),
  description: z.string(),
});
export type CertificateRecord = z.infer<typeof CertificateRowSchema>;

const FleetRowSchema = z.object({
  hub_urls: json(z.array(z.string())),
  hub_certificate: z.string(),
  name: z.string(),
  labels: json(stringMap),
  enrolled_at: z.string(),
});
export type FleetRecord = z.infer<typeof FleetRowSchema>;

/** An operation's body is kept whole as JSON; the Operations manager owns its shape. */
const OperationRowSchema = z.object({ body: json(z.unknown()) });
const ServerConfigRowSchema = z.object({ key: z.string(), value: z.string() });
const VersionRowSchema = z.object({ user_version: z.number() });

/** SQL true for an operation row that is not running (finished, or of unknown status). */
const NOT_RUNNING = `coalesce(CASE WHEN json_valid(body) THEN json_extract(body, '$.status_code')
  END, 0) NOT BETWEEN 100 AND 199`;

export class Store {
  readonly db: DatabaseSync;
  /** Prepared statements by SQL text; the texts are the constants below, so this stays small. */
  #statements = new Map<string, StatementSync>();

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    // WAL with synchronous=NORMAL: a commit is in the log (the OS's page cache) when it returns,
    // so a killed daemon loses nothing; only a host crash can lose the last commits, never the
    // database. FULL would fsync every commit, three per exec (its operation's rows).
    this.db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;" +
        " PRAGMA busy_timeout = 5000;",
    );
    this.migrate();
  }

  close(): void {
    this.#statements.clear();
    this.db.close();
  }

  /** The prepared statement for `sql`, prepared on first use. `sql` must be a constant text. */
  #statement(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  /** Runs a statement that returns no rows; answers how many rows it changed. */
  #run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.#statement(sql).run(...params).changes);
  }

  /** Every row of a query, each validated by `schema`. */
  #all<T>(schema: z.ZodType<T>, sql: string, ...params: SQLInputValue[]): T[] {
    return this.#statement(sql).all(...params).map((r) => schema.parse(r));
  }

  /** The first row of a query, validated by `schema`, or undefined. */
  #one<T>(schema: z.ZodType<T>, sql: string, ...params: SQLInputValue[]): T | undefined {
    const row = this.#statement(sql).get(...params);
    return row ? schema.parse(row) : undefined;
  }

  /** The schema version after migrations (number of applied migrations). */
  version(): number {
    return this.#one(VersionRowSchema, "PRAGMA user_version")!.user_version;
  }

  /** Whether the database was made by this start (the daemon's first start on this state dir). */
  fresh = false;

  private migrate(): void {
    const current = this.version();
    this.fresh = current === 0;
    if (current > MIGRATIONS.length) {
      throw new Error(
        `State database is schema version ${current}, newer than this outpost (${MIGRATIONS.length}): upgrade outpost`,
      );
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.transaction(() => {
        this.db.exec(MIGRATIONS[v]);
        this.db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  transaction<T>(fn: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.db.exec("COMMIT");
      return result;
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  // --- instances ---

  listInstances(): InstanceRecord[] {
    return this.#all(InstanceRowSchema, "SELECT * FROM instances ORDER BY name");
  }

  getInstance(name: string): InstanceRecord | undefined {
    return this.#one(InstanceRowSchema, "SELECT * FROM instances WHERE name = ?", name);
  }

  putInstance(r: InstanceRecord): void {
    this.#run(
      `INSERT INTO instances (name, type, architecture, description, config, devices, profiles,
         ephemeral, created_at, last_used_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET type = excluded.type, architecture = excluded.architecture,
         description = excluded.description, config = excluded.config, devices = excluded.devices,
         profiles = excluded.profiles, ephemeral = excluded.ephemeral,
         last_used_at = excluded.last_used_at`,
      r.name,
      r.type,
      r.architecture,
      r.description,
      JSON.stringify(r.config),
      JSON.stringify(r.devices),
      JSON.stringify(r.profiles),
      r.ephemeral ? 1 : 0,
      r.created_at,
      r.last_used_at,
    );
  }

  /** Renames an instance; its snapshots follow (ON UPDATE CASCADE). */
  renameInstance(from: string, to: string): void {
    this.#run("UPDATE instances SET name = ? WHERE name = ?", to, from);
  }

  deleteInstance(name: string): void {
    this.#run("DELETE FROM instances WHERE name = ?", name);
  }

  // --- profiles ---

  listProfiles(): ProfileRecord[] {
    return this.#all(ProfileRowSchema, "SELECT * FROM profiles ORDER BY name");
  }

  getProfile(name: string): ProfileRecord | undefined {
    return this.#one(ProfileRowSchema, "SELECT * FROM profiles WHERE name = ?", name);
  }

  countProfiles(): number {
    return this.#one(z.object({ n: z.number() }), "SELECT COUNT(*) AS n FROM profiles")!.n;
  }

  putProfile(r: ProfileRecord): void {
    this.#run(
      `INSERT INTO profiles (name, description, config, devices) VALUES (?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET description = excluded.description,
         config = excluded.config, devices = excluded.devices`,
      r.name,
      r.description,
      JSON.stringify(r.config),
      JSON.stringify(r.devices),
    );
  }

  /** Renames a profile and every instance's and snapshot's reference to it, at once. */
  renameProfile(from: string, to: string): void {
    this.transaction(() => {
      this.#run("UPDATE profiles SET name = ? WHERE name = ?", to, from);
      const swap = (list: string[]) => JSON.stringify(list.map((p) => p === from ? to : p));
      for (const i of this.listInstances()) {
        if (i.profiles.includes(from)) {
          this.#run("UPDATE instances SET profiles = ? WHERE name = ?", swap(i.profiles), i.name);
        }
        for (const s of this.listSnapshots(i.name).filter((s) => s.profiles.includes(from))) {
          this.#run(
            "UPDATE snapshots SET profiles = ? WHERE instance = ? AND name = ?",
            swap(s.profiles),
            i.name,
            s.name,
          );
        }
      }
    });
  }

  deleteProfile(name: string): void {
    this.#run("DELETE FROM profiles WHERE name = ?", name);
  }

  // --- networks ---

  listNetworks(): NetworkRecord[] {
    return this.#all(NetworkRowSchema, "SELECT * FROM networks ORDER BY name");
  }

  getNetwork(name: string): NetworkRecord | undefined {
    return this.#one(NetworkRowSchema, "SELECT * FROM networks WHERE name = ?", name);
  }

  putNetwork(r: NetworkRecord): void {
    this.#run(
      `INSERT INTO networks (name, description, type, config) VALUES (?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET description = excluded.description, type = excluded.type,
         config = excluded.config`,
      r.name,
      r.description,
      r.type,
      JSON.stringify(r.config),
    );
  }

  deleteNetwork(name: string): void {
    this.#run("DELETE FROM networks WHERE name = ?", name);
  }

  // --- storage pools and custom volumes ---

  listPools(): PoolRecord[] {
    return this.#all(PoolRowSchema, "SELECT * FROM storage_pools ORDER BY name");
  }

  getPool(name: string): PoolRecord | undefined {
    return this.#one(PoolRowSchema, "SELECT * FROM storage_pools WHERE name = ?", name);
  }

  putPool(r: PoolRecord): void {
    this.#run(
      `INSERT INTO storage_pools (name, driver, description, config, created_at)
       VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET description = excluded.description,
         config = excluded.config`,
      r.name,
      r.driver,
      r.description,
      JSON.stringify(r.config),
      r.created_at,
    );
  }

  deletePool(name: string): void {
    this.#run("DELETE FROM storage_pools WHERE name = ?", name);
  }

  listVolumes(pool?: string): VolumeRecord[] {
    return pool === undefined
      ? this.#all(VolumeRowSchema, "SELECT * FROM storage_volumes ORDER BY pool, name")
      : this.#all(
        VolumeRowSchema,
        "SELECT * FROM storage_volumes WHERE pool = ? ORDER BY name",
        pool,
      );
  }

  getVolume(pool: string, name: string): VolumeRecord | undefined {
    return this.#one(
      VolumeRowSchema,
      "SELECT * FROM storage_volumes WHERE pool = ? AND name = ?",
      pool,
      name,
    );
  }

  putVolume(r: VolumeRecord): void {
    this.#run(
      `INSERT INTO storage_volumes (pool, name, content_type, description, config, created_at)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(pool, name) DO UPDATE SET description = excluded.description,
         config = excluded.config`,
      r.pool,
      r.name,
      r.content_type,
      r.description,
      JSON.stringify(r.config),
      r.created_at,
    );
  }

  deleteVolume(pool: string, name: string): void {
    this.#run("DELETE FROM storage_volumes WHERE pool = ? AND name = ?", pool, name);
  }

  // --- snapshots ---

  listSnapshots(instance: string): SnapshotRecord[] {
    return this.#all(
      SnapshotRowSchema,
      "SELECT * FROM snapshots WHERE instance = ? ORDER BY created_at, name",
      instance,
    );
  }

  getSnapshot(instance: string, name: string): SnapshotRecord | undefined {
    return this.#one(
      SnapshotRowSchema,
      "SELECT * FROM snapshots WHERE instance = ? AND name = ?",
      instance,
      name,
    );
  }

  putSnapshot(r: SnapshotRecord): void {
    this.#run(
      `INSERT INTO snapshots (instance, name, architecture, description, config, devices, profiles,
         ephemeral, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(instance, name) DO UPDATE SET description = excluded.description,
         expires_at = excluded.expires_at`,
      r.instance,
      r.name,
      r.architecture,
      r.description,
      JSON.stringify(r.config),
      JSON.stringify(r.devices),
      JSON.stringify(r.profiles),
      r.ephemeral ? 1 : 0,
      r.created_at,
      r.expires_at,
    );
  }

  renameSnapshot(instance: string, from: string, to: string): void {
    this.#run("UPDATE snapshots SET name = ? WHERE instance = ? AND name = ?", to, instance, from);
  }

  deleteSnapshot(instance: string, name: string): void {
    this.#run("DELETE FROM snapshots WHERE instance = ? AND name = ?", instance, name);
  }

  // --- images and aliases ---

  listImages(): ImageRecord[] {
    return this.#all(ImageRowSchema, "SELECT * FROM images ORDER BY created_at");
  }

  getImage(fingerprint: string): ImageRecord | undefined {
    return this.#one(ImageRowSchema, "SELECT * FROM images WHERE fingerprint = ?", fingerprint);
  }

  /** Images whose fingerprint starts with `prefix` (Incus accepts unique prefixes). */
  findImages(prefix: string): ImageRecord[] {
    return this.#all(
      ImageRowSchema,
      "SELECT * FROM images WHERE substr(fingerprint, 1, ?) = ?",
      prefix.length,
      prefix,
    );
  }

  putImage(r: ImageRecord): void {
    // An upsert, not INSERT OR REPLACE: a replace deletes the row and cascades to its aliases.
    this.#run(
      `INSERT INTO images (fingerprint, type, architecture, filename, size, properties,
         public, created_at, uploaded_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(fingerprint) DO UPDATE SET type = excluded.type,
         architecture = excluded.architecture, filename = excluded.filename, size = excluded.size,
         properties = excluded.properties, public = excluded.public,
         created_at = excluded.created_at, uploaded_at = excluded.uploaded_at,
         last_used_at = excluded.last_used_at`,
      r.fingerprint,
      r.type,
      r.architecture,
      r.filename,
      r.size,
      JSON.stringify(r.properties),
      r.public ? 1 : 0,
      r.created_at,
      r.uploaded_at,
      r.last_used_at,
    );
  }

  deleteImage(fingerprint: string): void {
    this.#run("DELETE FROM images WHERE fingerprint = ?", fingerprint);
  }

  listAliases(): AliasRecord[] {
    return this.#all(AliasRowSchema, "SELECT * FROM aliases ORDER BY name");
  }

  getAlias(name: string): AliasRecord | undefined {
    return this.#one(AliasRowSchema, "SELECT * FROM aliases WHERE name = ?", name);
  }

  putAlias(r: AliasRecord): void {
    this.#run(
      "INSERT OR REPLACE INTO aliases (name, target, description) VALUES (?, ?, ?)",
      r.name,
      r.target,
      r.description,
    );
  }

  deleteAlias(name: string): void {
    this.#run("DELETE FROM aliases WHERE name = ?", name);
  }

  // --- the trust store ---

  listCertificates(): CertificateRecord[] {
    return this.#all(CertificateRowSchema, "SELECT * FROM certificates ORDER BY name, fingerprint");
  }

  countCertificates(): number {
    return this.#one(z.object({ n: z.number() }), "SELECT count(*) AS n FROM certificates")!.n;
  }

  /** Certificates whose fingerprint starts with `prefix` (Incus accepts unique prefixes). */
  findCertificates(prefix: string): CertificateRecord[] {
    return this.#all(
      CertificateRowSchema,
      "SELECT * FROM certificates WHERE substr(fingerprint, 1, ?) = ?",
      prefix.length,
      prefix,
    );
  }

  putCertificate(r: CertificateRecord): void {
    this.#run(
      `INSERT INTO certificates (fingerprint, name, type, restricted, projects, certificate,
         description) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(fingerprint) DO UPDATE SET name = excluded.name, type = excluded.type,
         restricted = excluded.restricted, projects = excluded.projects,
         certificate = excluded.certificate, description = excluded.description`,
      r.fingerprint,
      r.name,
      r.type,
      r.restricted ? 1 : 0,
      JSON.stringify(r.projects),
      r.certificate,
      r.description,
    );
  }

  deleteCertificate(fingerprint: string): void {
    this.#run("DELETE FROM certificates WHERE fingerprint = ?", fingerprint);
  }

  // --- operations (persisted for history; live ones are kept in memory) ---

  putOperation(id: string, body: unknown, updatedAt: string): void {
    this.#run(
      "INSERT OR REPLACE INTO operations (id, body, updated_at) VALUES (?, ?, ?)",
      id,
      JSON.stringify(body),
      updatedAt,
    );
  }

  /**
   * Every stored operation body, oldest update first. Updates within one millisecond keep their
   * order: each write replaces the row, so a later one has a higher rowid.
   */
  listOperations(): unknown[] {
    return this.#all(OperationRowSchema, "SELECT body FROM operations ORDER BY updated_at, rowid")
      .map((r) => r.body);
  }

  /**
   * Deletes the rows of operations that are not running (status code outside 100–199) and were
   * last updated before `olderThan`; then, of those left, all but the `keep` newest and any
   * beyond the newest whose bodies add up to more than `maxBytes`. Answers how many rows went.
   */
  pruneOperations(
    olderThan: string,
    keep = Number.MAX_SAFE_INTEGER,
    maxBytes = Number.MAX_SAFE_INTEGER,
  ): number {
    return this.#run(
      `DELETE FROM operations WHERE updated_at < ? AND ${NOT_RUNNING}`,
      olderThan,
    ) + this.#run(
      `DELETE FROM operations WHERE id IN (
         SELECT id FROM (
           SELECT id, row_number() OVER newest AS n, sum(length(body)) OVER newest AS total
           FROM operations WHERE ${NOT_RUNNING}
           WINDOW newest AS (ORDER BY updated_at DESC, rowid DESC ROWS UNBOUNDED PRECEDING))
         WHERE n > ? OR (n > 1 AND total > ?))`,
      Math.max(0, Math.floor(keep)),
      Math.max(0, Math.floor(maxBytes)),
    );
  }

  // --- server config ---

  serverConfig(): Record<string, string> {
    const rows = this.#all(ServerConfigRowSchema, "SELECT key, value FROM server_config");
    return Object.fromEntries(rows.map((r) => [r.key, r.value]));
  }

  setServerConfig(config: Record<string, string>): void {
    this.transaction(() => {
      this.#run("DELETE FROM server_config");
      for (const [k, v] of Object.entries(config)) {
        this.#run("INSERT INTO server_config (key, value) VALUES (?, ?)", k, v);
      }
    });
  }

  // --- fleet enrollment ---

  fleet(): FleetRecord | undefined {
    return this.#one(
      FleetRowSchema,
      "SELECT hub_urls, hub_certificate, name, labels, enrolled_at FROM fleet WHERE id = 1",
    );
  }

  setFleet(r: FleetRecord | undefined): void {
    this.transaction(() => {
      this.#run("DELETE FROM fleet");
      if (!r) return;
      this.#run(
        `INSERT INTO fleet (id, hub_urls, hub_certificate, name, labels, enrolled_at)
           VALUES (1, ?, ?, ?, ?, ?)`,
        JSON.stringify(r.hub_urls),
        r.hub_certificate,
        r.name,
        JSON.stringify(r.labels),
        r.enrolled_at,
      );
    });
  }
}
