/**
 * The SQL the hub's store speaks, over either database: statements with `?` placeholders, rows as
 * plain objects, transactions as a callback, migrations as an ordered list. SQLite (node:sqlite,
 * WAL) is the embedded one; PostgreSQL (the `pg` package) lets several hubs share one fleet.
 * Dialect differences are kept here: placeholders (`$1`), `{{serial}}` columns, and `FOR UPDATE`
 * (SQLite's `BEGIN IMMEDIATE` already locks the whole database, so it drops the clause).
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";

export type Row = Record<string, unknown>;

export interface Db {
  query(sql: string, params?: unknown[]): Promise<Row[]>;
  /** Runs a statement; answers how many rows it changed. */
  run(sql: string, params?: unknown[]): Promise<number>;
  /** Runs `fn` in one transaction (rolled back if it throws). */
  tx<T>(fn: (db: Db) => Promise<T>): Promise<T>;
  /** Applies the migrations not applied yet, in order. */
  migrate(migrations: string[]): Promise<void>;
  close(): Promise<void>;
}

const newer = (v: number) =>
  new Error(`The hub database is schema version ${v}, newer than this outpost: upgrade outpost`);

/** SQLite, one connection; statements run one at a time (a transaction holds the others off). */
export class SqliteDb implements Db {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;" +
        " PRAGMA foreign_keys = ON;",
    );
  }

  static #sql(sql: string): string {
    return sql.replace(/\s+FOR UPDATE\b/g, "").replaceAll(
      "{{serial}}",
      "INTEGER PRIMARY KEY AUTOINCREMENT",
    );
  }

  /**
   * The prepared statement for `sql`, prepared once: node:sqlite frees a statement only when the
   * database closes, so one prepared per query would grow the hub with every heartbeat. The
   * store's SQL texts are constants, so this map stays small.
   */
  #statement(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(SqliteDb.#sql(sql));
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #direct(): Db {
    const self: Db = {
      query: (sql, params = []) =>
        Promise.resolve(this.#statement(sql).all(...params as SQLInputValue[]) as Row[]),
      run: (sql, params = []) =>
        Promise.resolve(Number(this.#statement(sql).run(...params as SQLInputValue[]).changes)),
      tx: (fn) => fn(self),
      migrate: () => Promise.reject(new Error("not in a transaction")),
      close: () => Promise.resolve(),
    };
    return self;
  }

  /** Runs `fn` once every earlier call is done. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  query(sql: string, params?: unknown[]): Promise<Row[]> {
    return this.#serial(() => this.#direct().query(sql, params));
  }

  run(sql: string, params?: unknown[]): Promise<number> {
    return this.#serial(() => this.#direct().run(sql, params));
  }

  tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const out = await fn(this.#direct());
        this.#db.exec("COMMIT");
        return out;
      } catch (err) {
        this.#db.exec("ROLLBACK");
        throw err;
      }
    });
  }

  async migrate(migrations: string[]): Promise<void> {
    const version = (await this.query("PRAGMA user_version"))[0].user_version as number;
    if (version > migrations.length) throw newer(version);
    for (let v = version; v < migrations.length; v++) {
      await this.tx((db) => {
        this.#db.exec(SqliteDb.#sql(migrations[v]));
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
        return Promise.resolve(db);
      });
    }
  }

  close(): Promise<void> {
    return this.#serial(() => {
      this.#statements.clear();
      this.#db.close();
      return Promise.resolve();
    });
  }
}

/** The part of `pg`'s client and pool used here (the package ships no types for Deno). */
interface PgClient {
  query(sql: string, params?: unknown[]): Promise<{ rows: Row[]; rowCount: number | null }>;
}
interface PgPool extends PgClient {
  connect(): Promise<PgClient & { release(err?: unknown): void }>;
  end(): Promise<void>;
  on(event: "error", fn: (err: Error) => void): void;
}

/** `?` placeholders as PostgreSQL's `$1, $2, ...` (the store's SQL has no `?` in literals). */
export function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`).replaceAll("{{serial}}", "BIGSERIAL PRIMARY KEY");
}

export class PostgresDb implements Db {
  private constructor(private pool: PgPool) {}

  /** A pool of at most 10 connections to the database at `url` (`postgres://...`). */
  static async connect(url: string, log: (msg: string) => void): Promise<PostgresDb> {
    const { default: pg } = await import("pg");
    const pool = new pg.Pool({
      connectionString: url,
      max: 10,
      connectionTimeoutMillis: 10_000,
    }) as unknown as PgPool;
    // A connection the server drops while idle must not end the hub.
    pool.on("error", (err) => log(`hub: database: ${err.message}`));
    const db = new PostgresDb(pool);
    await db.query("SELECT 1");
    return db;
  }

  static #over(c: PgClient): Db {
    const self: Db = {
      query: async (sql, params = []) => (await c.query(numbered(sql), params)).rows,
      run: async (sql, params = []) => (await c.query(numbered(sql), params)).rowCount ?? 0,
      tx: (fn) => fn(self),
      migrate: () => Promise.reject(new Error("not in a transaction")),
      close: () => Promise.resolve(),
    };
    return self;
  }

  query(sql: string, params?: unknown[]): Promise<Row[]> {
    return PostgresDb.#over(this.pool).query(sql, params);
  }

  run(sql: string, params?: unknown[]): Promise<number> {
    return PostgresDb.#over(this.pool).run(sql, params);
  }

  async tx<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const out = await fn(PostgresDb.#over(client));
      await client.query("COMMIT");
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async migrate(migrations: string[]): Promise<void> {
    // One hub migrates at a time (an advisory lock), the others wait and find it done.
    await this.tx(async (db) => {
      await db.query("SELECT pg_advisory_xact_lock(7400211)");
      await db.run("CREATE TABLE IF NOT EXISTS outpost_schema (version INTEGER NOT NULL)");
      const rows = await db.query("SELECT version FROM outpost_schema");
      let version = rows.length ? Number(rows[0].version) : 0;
      if (!rows.length) await db.run("INSERT INTO outpost_schema (version) VALUES (0)");
      if (version > migrations.length) throw newer(version);
      for (; version < migrations.length; version++) {
        for (const stmt of migrations[version].split(";").map((s) => s.trim()).filter(Boolean)) {
          await db.run(stmt);
        }
        await db.run("UPDATE outpost_schema SET version = ?", [version + 1]);
      }
    });
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}
