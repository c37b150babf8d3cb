/**
 * The hub's records: enrolled hosts (never deleted for being away) and join tokens (by the hash of
 * their secret, never the secret). One interface, async so a shared database can stand behind it;
 * the embedded one is SQLite (node:sqlite, WAL) in the hub's state dir.
 */
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { z } from "zod";
import { type Inventory, InventorySchema, type Labels, LabelsSchema } from "../contract/fleet.ts";

export interface HostRecord {
  name: string;
  fingerprint: string;
  /** PEM. */
  certificate: string;
  labels: Labels;
  enrolled_at: string;
  last_seen: string;
  /** The hub process holding the host's tunnel, empty when none does. */
  hub: string;
  inventory: Inventory | null;
}

export interface TokenRecord {
  id: string;
  /** sha256 of the secret, hex. */
  hash: string;
  description: string;
  labels: Labels;
  uses_left: number;
  /** RFC 3339; empty: never. */
  expires_at: string;
  created_at: string;
}

/** One event a host reported (or a note that some were dropped while it was away). */
export interface HostEvent {
  /** When the host says it happened. */
  timestamp: string;
  type: string;
  event: unknown;
}

/** A client certificate the hub trusts as an administrator (remote `outpost` CLIs). */
export interface ClientRecord {
  fingerprint: string;
  name: string;
  certificate: string;
  created_at: string;
}

/** A pending admin trust token (by the hash of its secret). */
export interface ClientTokenRecord {
  id: string;
  hash: string;
  name: string;
  expires_at: string;
  created_at: string;
}

export interface HubStore {
  listHosts(): Promise<HostRecord[]>;
  getHost(name: string): Promise<HostRecord | undefined>;
  hostByFingerprint(fingerprint: string): Promise<HostRecord | undefined>;
  /**
   * Spends one use of the token with `hash` (valid at `now`) and records the host, in one
   * transaction. Answers the host's labels, or why not.
   */
  enroll(
    hash: string,
    now: string,
    host: Pick<HostRecord, "name" | "fingerprint" | "certificate">,
  ): Promise<{ ok: true; labels: Labels } | { ok: false; why: "token" | "name" }>;
  /** A tunnel opened (hub = this process) or closed (hub = ""): when, and where. */
  setConnection(name: string, hub: string, lastSeen: string): Promise<void>;
  /** A heartbeat: when, and the inventory when it changed. */
  touch(name: string, lastSeen: string, inventory?: Inventory): Promise<void>;
  deleteHost(name: string): Promise<boolean>;
  /** Appends a host's events (keeping its newest `keep`). */
  addEvents(name: string, events: HostEvent[], keep: number): Promise<void>;
  /** A host's events, oldest first. */
  listEvents(name: string): Promise<HostEvent[]>;
  listTokens(): Promise<TokenRecord[]>;
  putToken(t: TokenRecord): Promise<void>;
  deleteToken(id: string): Promise<boolean>;
  /** Removes tokens that expired before `now` or have no use left. */
  pruneTokens(now: string): Promise<number>;
  listClients(): Promise<ClientRecord[]>;
  clientByFingerprint(fingerprint: string): Promise<ClientRecord | undefined>;
  deleteClient(fingerprint: string): Promise<boolean>;
  listClientTokens(): Promise<ClientTokenRecord[]>;
  putClientToken(t: ClientTokenRecord): Promise<void>;
  deleteClientToken(id: string): Promise<boolean>;
  /** Spends the admin token with `hash` (valid at `now`) on `client`, in one transaction. */
  redeemClientToken(
    hash: string,
    now: string,
    client: Omit<ClientRecord, "name">,
  ): Promise<boolean>;
  close(): Promise<void>;
}

const MIGRATIONS = [
  `CREATE TABLE hosts (
     name TEXT PRIMARY KEY,
     fingerprint TEXT NOT NULL UNIQUE,
     certificate TEXT NOT NULL,
     labels TEXT NOT NULL,
     enrolled_at TEXT NOT NULL,
     last_seen TEXT NOT NULL DEFAULT '',
     hub TEXT NOT NULL DEFAULT '',
     inventory TEXT
   );
   CREATE TABLE join_tokens (
     id TEXT PRIMARY KEY,
     hash TEXT NOT NULL UNIQUE,
     description TEXT NOT NULL,
     labels TEXT NOT NULL,
     uses_left INTEGER NOT NULL,
     expires_at TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
  `CREATE TABLE host_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     host TEXT NOT NULL REFERENCES hosts (name) ON DELETE CASCADE,
     timestamp TEXT NOT NULL,
     type TEXT NOT NULL,
     event TEXT NOT NULL
   );
   CREATE INDEX host_events_by_host ON host_events (host, id);`,
  `CREATE TABLE clients (
     fingerprint TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     certificate TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE client_tokens (
     id TEXT PRIMARY KEY,
     hash TEXT NOT NULL UNIQUE,
     name TEXT NOT NULL,
     expires_at TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
];

const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((s, ctx) => {
    try {
      return JSON.parse(s);
    } catch {
      ctx.addIssue({ code: "custom", message: "not JSON" });
      return z.NEVER;
    }
  }).pipe(schema);

const HostRowSchema = z.object({
  name: z.string(),
  fingerprint: z.string(),
  certificate: z.string(),
  labels: json(LabelsSchema),
  enrolled_at: z.string(),
  last_seen: z.string(),
  hub: z.string(),
  inventory: z.string().nullable().transform((s) => {
    if (s === null) return null;
    try {
      const r = InventorySchema.safeParse(JSON.parse(s));
      return r.success ? r.data : null;
    } catch {
      return null;
    }
  }),
});

const TokenRowSchema = z.object({
  id: z.string(),
  hash: z.string(),
  description: z.string(),
  labels: json(LabelsSchema),
  uses_left: z.number(),
  expires_at: z.string(),
  created_at: z.string(),
});

const EventRowSchema = z.object({
  timestamp: z.string(),
  type: z.string(),
  event: json(z.unknown()),
});

const ClientRowSchema = z.object({
  fingerprint: z.string(),
  name: z.string(),
  certificate: z.string(),
  created_at: z.string(),
});

const ClientTokenRowSchema = z.object({
  id: z.string(),
  hash: z.string(),
  name: z.string(),
  expires_at: z.string(),
  created_at: z.string(),
});

const HOST_COLUMNS =
  "name, fingerprint, certificate, labels, enrolled_at, last_seen, hub, inventory";

export class SqliteHubStore implements HubStore {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;" +
        " PRAGMA foreign_keys = ON;",
    );
    const version = (this.#db.prepare("PRAGMA user_version").get() as { user_version: number })
      .user_version;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `Hub database is schema version ${version}, newer than this outpost: upgrade outpost`,
      );
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.#tx(() => {
        this.#db.exec(MIGRATIONS[v]);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  #tx<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  #run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.#db.prepare(sql).run(...params).changes);
  }

  #all<T>(schema: z.ZodType<T>, sql: string, ...params: SQLInputValue[]): T[] {
    return this.#db.prepare(sql).all(...params).map((r) => schema.parse(r));
  }

  #one<T>(schema: z.ZodType<T>, sql: string, ...params: SQLInputValue[]): T | undefined {
    const row = this.#db.prepare(sql).get(...params);
    return row ? schema.parse(row) : undefined;
  }

  listHosts(): Promise<HostRecord[]> {
    return Promise.resolve(
      this.#all(HostRowSchema, `SELECT ${HOST_COLUMNS} FROM hosts ORDER BY name`),
    );
  }

  getHost(name: string): Promise<HostRecord | undefined> {
    return Promise.resolve(
      this.#one(HostRowSchema, `SELECT ${HOST_COLUMNS} FROM hosts WHERE name = ?`, name),
    );
  }

  hostByFingerprint(fingerprint: string): Promise<HostRecord | undefined> {
    return Promise.resolve(
      this.#one(
        HostRowSchema,
        `SELECT ${HOST_COLUMNS} FROM hosts WHERE fingerprint = ?`,
        fingerprint,
      ),
    );
  }

  enroll(
    hash: string,
    now: string,
    host: Pick<HostRecord, "name" | "fingerprint" | "certificate">,
  ): Promise<{ ok: true; labels: Labels } | { ok: false; why: "token" | "name" }> {
    return Promise.resolve(this.#tx(() => {
      const token = this.#one(
        TokenRowSchema,
        `SELECT * FROM join_tokens WHERE hash = ? AND uses_left > 0
           AND (expires_at = '' OR expires_at > ?)`,
        hash,
        now,
      );
      if (!token) return { ok: false as const, why: "token" as const };
      const byName = this.#one(
        HostRowSchema,
        `SELECT ${HOST_COLUMNS} FROM hosts WHERE name = ?`,
        host.name,
      );
      if (byName && byName.fingerprint !== host.fingerprint) {
        return { ok: false as const, why: "name" as const };
      }
      // A host that enrolls again (a new name, new labels) keeps one record.
      this.#run(
        "DELETE FROM hosts WHERE fingerprint = ? AND name != ?",
        host.fingerprint,
        host.name,
      );
      this.#run(
        `INSERT INTO hosts (name, fingerprint, certificate, labels, enrolled_at)
           VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET labels = excluded.labels,
           certificate = excluded.certificate, enrolled_at = excluded.enrolled_at`,
        host.name,
        host.fingerprint,
        host.certificate,
        JSON.stringify(token.labels),
        now,
      );
      this.#run("UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ?", token.id);
      return { ok: true as const, labels: token.labels };
    }));
  }

  setConnection(name: string, hub: string, lastSeen: string): Promise<void> {
    this.#run("UPDATE hosts SET hub = ?, last_seen = ? WHERE name = ?", hub, lastSeen, name);
    return Promise.resolve();
  }

  touch(name: string, lastSeen: string, inventory?: Inventory): Promise<void> {
    if (inventory) {
      this.#run(
        "UPDATE hosts SET last_seen = ?, inventory = ? WHERE name = ?",
        lastSeen,
        JSON.stringify(inventory),
        name,
      );
    } else this.#run("UPDATE hosts SET last_seen = ? WHERE name = ?", lastSeen, name);
    return Promise.resolve();
  }

  deleteHost(name: string): Promise<boolean> {
    return Promise.resolve(this.#run("DELETE FROM hosts WHERE name = ?", name) > 0);
  }

  addEvents(name: string, events: HostEvent[], keep: number): Promise<void> {
    this.#tx(() => {
      for (const e of events) {
        this.#run(
          "INSERT INTO host_events (host, timestamp, type, event) VALUES (?, ?, ?, ?)",
          name,
          e.timestamp,
          e.type,
          JSON.stringify(e.event),
        );
      }
      this.#run(
        `DELETE FROM host_events WHERE host = ? AND id <= coalesce((SELECT id FROM host_events
           WHERE host = ? ORDER BY id DESC LIMIT 1 OFFSET ?), -1)`,
        name,
        name,
        keep,
      );
    });
    return Promise.resolve();
  }

  listEvents(name: string): Promise<HostEvent[]> {
    return Promise.resolve(
      this.#all(
        EventRowSchema,
        "SELECT timestamp, type, event FROM host_events WHERE host = ? ORDER BY id",
        name,
      ),
    );
  }

  listTokens(): Promise<TokenRecord[]> {
    return Promise.resolve(
      this.#all(TokenRowSchema, "SELECT * FROM join_tokens ORDER BY created_at"),
    );
  }

  putToken(t: TokenRecord): Promise<void> {
    this.#run(
      `INSERT INTO join_tokens (id, hash, description, labels, uses_left, expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      t.id,
      t.hash,
      t.description,
      JSON.stringify(t.labels),
      t.uses_left,
      t.expires_at,
      t.created_at,
    );
    return Promise.resolve();
  }

  deleteToken(id: string): Promise<boolean> {
    return Promise.resolve(this.#run("DELETE FROM join_tokens WHERE id = ?", id) > 0);
  }

  pruneTokens(now: string): Promise<number> {
    return Promise.resolve(
      this.#run(
        "DELETE FROM join_tokens WHERE uses_left <= 0 OR (expires_at != '' AND expires_at <= ?)",
        now,
      ),
    );
  }

  close(): Promise<void> {
    this.#db.close();
    return Promise.resolve();
  }

  listClients(): Promise<ClientRecord[]> {
    return Promise.resolve(this.#all(ClientRowSchema, "SELECT * FROM clients ORDER BY name"));
  }

  clientByFingerprint(fingerprint: string): Promise<ClientRecord | undefined> {
    return Promise.resolve(
      this.#one(ClientRowSchema, "SELECT * FROM clients WHERE fingerprint = ?", fingerprint),
    );
  }

  deleteClient(fingerprint: string): Promise<boolean> {
    return Promise.resolve(this.#run("DELETE FROM clients WHERE fingerprint = ?", fingerprint) > 0);
  }

  listClientTokens(): Promise<ClientTokenRecord[]> {
    return Promise.resolve(
      this.#all(ClientTokenRowSchema, "SELECT * FROM client_tokens ORDER BY created_at"),
    );
  }

  putClientToken(t: ClientTokenRecord): Promise<void> {
    this.#run(
      "INSERT INTO client_tokens (id, hash, name, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
      t.id,
      t.hash,
      t.name,
      t.expires_at,
      t.created_at,
    );
    return Promise.resolve();
  }

  deleteClientToken(id: string): Promise<boolean> {
    return Promise.resolve(this.#run("DELETE FROM client_tokens WHERE id = ?", id) > 0);
  }

  redeemClientToken(
    hash: string,
    now: string,
    client: Omit<ClientRecord, "name">,
  ): Promise<boolean> {
    return Promise.resolve(this.#tx(() => {
      const t = this.#one(
        ClientTokenRowSchema,
        "SELECT * FROM client_tokens WHERE hash = ? AND (expires_at = '' OR expires_at > ?)",
        hash,
        now,
      );
      if (!t) return false;
      this.#run("DELETE FROM client_tokens WHERE id = ?", t.id);
      this.#run(
        `INSERT INTO clients (fingerprint, name, certificate, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name`,
        client.fingerprint,
        t.name,
        client.certificate,
        client.created_at,
      );
      return true;
    }));
  }
}
