/**
 * The hub's records: enrolled hosts (never deleted for being away), join tokens (by the hash of
 * their secret, never the secret), admin clients and each host's newest events. One store over
 * SQL that SQLite and PostgreSQL both speak (`hub/sql.ts`): the embedded SQLite in the hub's state
 * dir, or a PostgreSQL database several hubs share.
 */
import { z } from "zod";
import type { Db, Row } from "./sql.ts";
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
  /**
   * The certificate and key every hub on this database presents: the first hub's, stored by it
   * (`mine` when none is stored yet).
   */
  claimIdentity(mine: HubIdentity): Promise<HubIdentity>;
  close(): Promise<void>;
}

export interface HubIdentity {
  certificate: string;
  key: string;
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
     id {{serial}},
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
  `CREATE TABLE hub_identity (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     certificate TEXT NOT NULL,
     key TEXT NOT NULL
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

/** Rows of `sql`, each validated by `schema`. */
async function all<T>(
  db: Db,
  schema: z.ZodType<T>,
  sql: string,
  ...params: unknown[]
): Promise<T[]> {
  return (await db.query(sql, params)).map((r: Row) => schema.parse(r));
}

async function one<T>(
  db: Db,
  schema: z.ZodType<T>,
  sql: string,
  ...params: unknown[]
): Promise<T | undefined> {
  const rows = await db.query(sql, params);
  return rows[0] ? schema.parse(rows[0]) : undefined;
}

export class SqlHubStore implements HubStore {
  private constructor(private db: Db) {}

  /** The store on `db`, its schema brought up to date. */
  static async open(db: Db): Promise<SqlHubStore> {
    await db.migrate(MIGRATIONS);
    return new SqlHubStore(db);
  }

  listHosts(): Promise<HostRecord[]> {
    return all(this.db, HostRowSchema, `SELECT ${HOST_COLUMNS} FROM hosts ORDER BY name`);
  }

  getHost(name: string): Promise<HostRecord | undefined> {
    return one(this.db, HostRowSchema, `SELECT ${HOST_COLUMNS} FROM hosts WHERE name = ?`, name);
  }

  hostByFingerprint(fingerprint: string): Promise<HostRecord | undefined> {
    return one(
      this.db,
      HostRowSchema,
      `SELECT ${HOST_COLUMNS} FROM hosts WHERE fingerprint = ?`,
      fingerprint,
    );
  }

  enroll(
    hash: string,
    now: string,
    host: Pick<HostRecord, "name" | "fingerprint" | "certificate">,
  ): Promise<{ ok: true; labels: Labels } | { ok: false; why: "token" | "name" }> {
    return this.db.tx(async (db) => {
      const token = await one(
        db,
        TokenRowSchema,
        `SELECT * FROM join_tokens WHERE hash = ? AND uses_left > 0
           AND (expires_at = '' OR expires_at > ?) FOR UPDATE`,
        hash,
        now,
      );
      if (!token) return { ok: false as const, why: "token" as const };
      const byName = await one(
        db,
        HostRowSchema,
        `SELECT ${HOST_COLUMNS} FROM hosts WHERE name = ?`,
        host.name,
      );
      if (byName && byName.fingerprint !== host.fingerprint) {
        return { ok: false as const, why: "name" as const };
      }
      // A host that enrolls again (a new name, new labels) keeps one record.
      await db.run("DELETE FROM hosts WHERE fingerprint = ? AND name != ?", [
        host.fingerprint,
        host.name,
      ]);
      await db.run(
        `INSERT INTO hosts (name, fingerprint, certificate, labels, enrolled_at)
           VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET labels = excluded.labels,
           certificate = excluded.certificate, enrolled_at = excluded.enrolled_at`,
        [host.name, host.fingerprint, host.certificate, JSON.stringify(token.labels), now],
      );
      await db.run("UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ?", [token.id]);
      return { ok: true as const, labels: token.labels };
    });
  }

  async setConnection(name: string, hub: string, lastSeen: string): Promise<void> {
    await this.db.run("UPDATE hosts SET hub = ?, last_seen = ? WHERE name = ?", [
      hub,
      lastSeen,
      name,
    ]);
  }

  async touch(name: string, lastSeen: string, inventory?: Inventory): Promise<void> {
    if (inventory) {
      await this.db.run("UPDATE hosts SET last_seen = ?, inventory = ? WHERE name = ?", [
        lastSeen,
        JSON.stringify(inventory),
        name,
      ]);
    } else await this.db.run("UPDATE hosts SET last_seen = ? WHERE name = ?", [lastSeen, name]);
  }

  async deleteHost(name: string): Promise<boolean> {
    return await this.db.run("DELETE FROM hosts WHERE name = ?", [name]) > 0;
  }

  addEvents(name: string, events: HostEvent[], keep: number): Promise<void> {
    return this.db.tx(async (db) => {
      for (const e of events) {
        await db.run("INSERT INTO host_events (host, timestamp, type, event) VALUES (?, ?, ?, ?)", [
          name,
          e.timestamp,
          e.type,
          JSON.stringify(e.event),
        ]);
      }
      await db.run(
        `DELETE FROM host_events WHERE host = ? AND id <= coalesce((SELECT id FROM host_events
           WHERE host = ? ORDER BY id DESC LIMIT 1 OFFSET ?), -1)`,
        [name, name, keep],
      );
    });
  }

  listEvents(name: string): Promise<HostEvent[]> {
    return all(
      this.db,
      EventRowSchema,
      "SELECT timestamp, type, event FROM host_events WHERE host = ? ORDER BY id",
      name,
    );
  }

  listTokens(): Promise<TokenRecord[]> {
    return all(this.db, TokenRowSchema, "SELECT * FROM join_tokens ORDER BY created_at");
  }

  async putToken(t: TokenRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO join_tokens (id, hash, description, labels, uses_left, expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      [
        t.id,
        t.hash,
        t.description,
        JSON.stringify(t.labels),
        t.uses_left,
        t.expires_at,
        t.created_at,
      ],
    );
  }

  async deleteToken(id: string): Promise<boolean> {
    return await this.db.run("DELETE FROM join_tokens WHERE id = ?", [id]) > 0;
  }

  pruneTokens(now: string): Promise<number> {
    return this.db.run(
      "DELETE FROM join_tokens WHERE uses_left <= 0 OR (expires_at != '' AND expires_at <= ?)",
      [now],
    );
  }

  listClients(): Promise<ClientRecord[]> {
    return all(this.db, ClientRowSchema, "SELECT * FROM clients ORDER BY name");
  }

  clientByFingerprint(fingerprint: string): Promise<ClientRecord | undefined> {
    return one(
      this.db,
      ClientRowSchema,
      "SELECT * FROM clients WHERE fingerprint = ?",
      fingerprint,
    );
  }

  async deleteClient(fingerprint: string): Promise<boolean> {
    return await this.db.run("DELETE FROM clients WHERE fingerprint = ?", [fingerprint]) > 0;
  }

  listClientTokens(): Promise<ClientTokenRecord[]> {
    return all(this.db, ClientTokenRowSchema, "SELECT * FROM client_tokens ORDER BY created_at");
  }

  async putClientToken(t: ClientTokenRecord): Promise<void> {
    await this.db.run(
      "INSERT INTO client_tokens (id, hash, name, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
      [t.id, t.hash, t.name, t.expires_at, t.created_at],
    );
  }

  async deleteClientToken(id: string): Promise<boolean> {
    return await this.db.run("DELETE FROM client_tokens WHERE id = ?", [id]) > 0;
  }

  redeemClientToken(
    hash: string,
    now: string,
    client: Omit<ClientRecord, "name">,
  ): Promise<boolean> {
    return this.db.tx(async (db) => {
      const t = await one(
        db,
        ClientTokenRowSchema,
        "SELECT * FROM client_tokens WHERE hash = ? AND (expires_at = '' OR expires_at > ?) FOR UPDATE",
        hash,
        now,
      );
      if (!t) return false;
      await db.run("DELETE FROM client_tokens WHERE id = ?", [t.id]);
      await db.run(
        `INSERT INTO clients (fingerprint, name, certificate, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name`,
        [client.fingerprint, t.name, client.certificate, client.created_at],
      );
      return true;
    });
  }

  claimIdentity(mine: HubIdentity): Promise<HubIdentity> {
    return this.db.tx(async (db) => {
      await db.run(
        `INSERT INTO hub_identity (id, certificate, key) VALUES (1, ?, ?)
         ON CONFLICT (id) DO NOTHING`,
        [mine.certificate, mine.key],
      );
      const row = (await db.query("SELECT certificate, key FROM hub_identity WHERE id = 1"))[0];
      return { certificate: String(row.certificate), key: String(row.key) };
    });
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
