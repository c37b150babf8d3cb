/**
 * Incus operations: every long verb runs as one, is visible at /1.0/operations/{id}, can be
 * waited on, and reports each state change as an `operation` event. Finished operations are kept
 * for a retention time and up to a count, in memory and in the store, then pruned.
 */
import { z } from "zod";
import type { EventBus } from "./events.ts";
import { BadRequest, Forbidden, InvalidState, messageOf, NotFound } from "../contract/errors.ts";
import type { Store } from "./store.ts";
import type {
  Operation,
  OperationClass,
  OperationStatus,
  OperationStatusCode,
} from "../contract/responses.ts";

export const Status = {
  created: [100, "Operation created"],
  running: [103, "Running"],
  success: [200, "Success"],
  failure: [400, "Failure"],
  cancelled: [401, "Cancelled"],
} as const satisfies Record<string, readonly [OperationStatusCode, OperationStatus]>;
type StatusName = keyof typeof Status;

export interface OperationContext {
  /** Aborted when the operation is cancelled. */
  signal: AbortSignal;
  /** Merges into the operation's metadata and emits an update. */
  update(metadata: Record<string, unknown>): void;
}

/**
 * Turns the request being served into a websocket: Deno's own upgrade on the unix socket, the
 * `ws` package's on the HTTPS listener. The socket opens once the 101 has gone out.
 */
export type UpgradeWebSocket = () => { socket: WebSocket; response: Response };

export interface OperationSpec {
  description: string;
  class?: OperationClass;
  resources?: Record<string, string[]>;
  metadata?: Record<string, unknown>;
  mayCancel?: boolean;
  run: (ctx: OperationContext) => Promise<Record<string, unknown> | void>;
  /** For websocket operations: upgrades a request carrying a valid secret, else undefined. */
  websocket?: (secret: string, upgrade: UpgradeWebSocket) => Response | undefined;
}

/** An operation and what it needs while it runs. */
class TrackedOperation {
  body: Operation;
  /** Dropped when the operation finishes, with everything its handler holds (sockets, buffers). */
  websocket?: (secret: string, upgrade: UpgradeWebSocket) => Response | undefined;
  readonly done: Promise<void>;
  readonly abort = new AbortController();
  /** When the operation finished (ms since the epoch), 0 while it runs. */
  finishedAt = 0;
  /** Counted among the finished ones kept (and so pruned in time). */
  retired = false;
  /** The size of the body as JSON when it finished (bytes, near enough). */
  size = 0;
  #resolve!: () => void;

  constructor(spec: OperationSpec, id: string = crypto.randomUUID()) {
    const now = new Date().toISOString();
    this.body = {
      id,
      class: spec.class ?? "task",
      description: spec.description,
      created_at: now,
      updated_at: now,
      status: Status.created[1],
      status_code: Status.created[0],
      resources: spec.resources ?? null,
      metadata: spec.metadata ?? null,
      may_cancel: spec.mayCancel ?? false,
      err: "",
      location: "none",
    };
    this.done = new Promise((r) => this.#resolve = r);
    this.websocket = spec.websocket;
  }

  get finished(): boolean {
    return this.body.status_code >= 200;
  }

  set(status: StatusName, patch: Partial<Operation> = {}): void {
    const [code, text] = Status[status];
    this.body = {
      ...this.body,
      ...patch,
      status: text,
      status_code: code,
      updated_at: new Date().toISOString(),
    };
    if (this.finished) {
      this.finishedAt = Date.now();
      this.websocket = undefined;
      this.#resolve();
    }
  }
}

/** The error of an operation the daemon was stopped (or killed) in the middle of. */
export const INTERRUPTED = "Interrupted: the daemon stopped before the operation finished";

/** What recovery needs of a stored body; the rest is kept as it was. */
const StoredBodySchema = z.looseObject({
  id: z.string(),
  description: z.string().catch(""),
  status_code: z.number(),
});

export interface OperationsOptions {
  /**
   * How long a finished operation stays listed and stored (default 5 s: Incus removes a finished
   * operation from its map and database 5 s after it ends; clients read the end at once).
   */
  retentionMs?: number;
  /** At most this many finished operations are kept, in memory and in the store (default 1,000). */
  maxFinished?: number;
  /**
   * At most this many bytes of finished operations' bodies (as JSON) are kept, in memory and in
   * the store (default 16 MiB): a body can carry up to a request's worth of metadata.
   */
  maxFinishedBytes?: number;
  /** At most this many operations run at once; more are refused (default 10,000). */
  maxRunning?: number;
}

export class Operations {
  #ops = new Map<string, TrackedOperation>();
  /** Finished operations still kept, oldest first. */
  #finished: TrackedOperation[] = [];
  #retentionMs: number;
  #maxFinished: number;
  #maxFinishedBytes: number;
  #finishedBytes = 0;
  #maxRunning: number;
  #pruneTimer?: ReturnType<typeof setTimeout>;
  /** Finished operations, and their bytes, since the store was last pruned. */
  #unpruned = 0;
  #unprunedBytes = 0;

  constructor(
    private events: EventBus,
    private store?: Store,
    private log: (msg: string) => void = console.error,
    options: OperationsOptions = {},
  ) {
    this.#retentionMs = options.retentionMs ?? 5_000;
    this.#maxFinished = options.maxFinished ?? 1_000;
    this.#maxFinishedBytes = options.maxFinishedBytes ?? 16 * 2 ** 20;
    this.#maxRunning = options.maxRunning ?? 10_000;
  }

  /** Starts `spec.run` in the background and returns the operation's first body. */
  start(spec: OperationSpec): Operation {
    const running = this.#ops.size - this.#finished.length;
    if (running >= this.#maxRunning) {
      throw new InvalidState(`Too many operations running (${running}): wait for some to finish`);
    }
    const op = new TrackedOperation(spec);
    this.#ops.set(op.body.id, op);
    op.set("running");
    this.#publish(op);
    const ctx: OperationContext = {
      signal: op.abort.signal,
      update: (metadata) => {
        if (op.finished) return;
        op.body = {
          ...op.body,
          metadata: { ...op.body.metadata, ...metadata },
          updated_at: new Date().toISOString(),
        };
        this.#publish(op);
      },
    };
    // Let the caller answer 202 before the work (and its events) begins.
    queueMicrotask(() => this.#run(op, spec, ctx));
    return op.body;
  }

  async #run(op: TrackedOperation, spec: OperationSpec, ctx: OperationContext): Promise<void> {
    try {
      const result = await spec.run(ctx);
      if (op.finished) return;
      op.set("success", result ? { metadata: { ...op.body.metadata, ...result } } : {});
    } catch (err) {
      if (op.finished) return;
      if (op.abort.signal.aborted) op.set("cancelled", { err: "Operation cancelled" });
      else op.set("failure", { err: messageOf(err) });
    }
    this.log(
      `operation ${op.body.id} (${op.body.description}): ${op.body.status}${
        op.body.err ? `: ${op.body.err}` : ""
      }`,
    );
    this.#publish(op);
    this.#retire(op);
  }

  /** Counts a finished operation; it is pruned after the retention time or beyond the cap. */
  #retire(op: TrackedOperation): void {
    if (op.retired) return;
    op.retired = true;
    op.size = JSON.stringify(op.body).length;
    this.#finished.push(op);
    this.#finishedBytes += op.size;
    // The newest stays whatever its size: a client asking right after the end must find it.
    while (
      this.#finished.length > 1 &&
      (this.#finished.length > this.#maxFinished || this.#finishedBytes > this.#maxFinishedBytes)
    ) this.#forgetOldest();
    // The store is pruned by a tenth of either cap, not for each operation (a prune costs ms).
    this.#unpruned++;
    this.#unprunedBytes += op.size;
    if (
      this.#unpruned >= this.#maxFinished / 10 || this.#unprunedBytes >= this.#maxFinishedBytes / 10
    ) this.#pruneStore();
    this.#schedulePrune();
  }

  /** Arms one timer for when the oldest kept finished operation expires. */
  #schedulePrune(): void {
    if (this.#pruneTimer !== undefined || this.#finished.length === 0) return;
    const due = this.#finished[0].finishedAt + this.#retentionMs - Date.now();
    const timer = setTimeout(() => {
      this.#pruneTimer = undefined;
      this.prune();
    }, Math.max(0, due) + 10);
    Deno.unrefTimer(timer);
    this.#pruneTimer = timer;
  }

  /**
   * Forgets finished operations older than the retention time, in memory and in the store, and
   * keeps at most the cap of the newest finished ones. Runs by itself on a timer.
   */
  prune(now = Date.now()): void {
    const cutoff = now - this.#retentionMs;
    while (this.#finished.length > 0 && this.#finished[0].finishedAt <= cutoff) {
      this.#forgetOldest();
    }
    this.#pruneStore(now);
    this.#schedulePrune();
  }

  #forgetOldest(): void {
    const op = this.#finished.shift()!;
    this.#finishedBytes -= op.size;
    this.#ops.delete(op.body.id);
  }

  #pruneStore(now = Date.now()): void {
    this.#unpruned = 0;
    this.#unprunedBytes = 0;
    if (!this.store) return;
    try {
      const cutoff = new Date(now - this.#retentionMs).toISOString();
      this.store.pruneOperations(cutoff, this.#maxFinished, this.#maxFinishedBytes);
    } catch (err) {
      this.log(`Could not prune stored operations: ${messageOf(err)}`);
    }
  }

  /**
   * At start-up, before any operation starts: the ones the store still records as created or
   * running were cut off by the daemon stopping. Each is recorded as failed with INTERRUPTED and
   * kept for the retention time, so a client that asks after the restart learns how it ended.
   */
  recoverInterrupted(): Operation[] {
    if (!this.store) return [];
    const recovered: Operation[] = [];
    let stored: unknown[];
    try {
      stored = this.store.listOperations();
    } catch (err) {
      this.log(`Could not read stored operations: ${messageOf(err)}`);
      return [];
    }
    for (const raw of stored) {
      const parsed = StoredBodySchema.safeParse(raw);
      if (!parsed.success) continue;
      const { id, description, status_code } = parsed.data;
      if (status_code >= 200 || this.#ops.has(id)) continue;
      const op = new TrackedOperation({ description, run: () => Promise.resolve() }, id);
      op.body = { ...op.body, ...(raw as Partial<Operation>) };
      op.set("failure", { err: INTERRUPTED, may_cancel: false });
      this.#ops.set(id, op);
      this.#persist(op);
      this.#retire(op);
      recovered.push(op.body);
    }
    if (recovered.length > 0) {
      this.log(`${recovered.length} operation(s) interrupted by a daemon stop: marked failed`);
    }
    this.prune();
    return recovered;
  }

  /** Stops the prune timer (the daemon is shutting down). */
  close(): void {
    clearTimeout(this.#pruneTimer);
    this.#pruneTimer = undefined;
  }

  #publish(op: TrackedOperation): void {
    this.events.emit("operation", op.body);
    this.#persist(op);
  }

  #persist(op: TrackedOperation): void {
    try {
      this.store?.putOperation(op.body.id, op.body, op.body.updated_at);
    } catch (err) {
      this.log(`Could not persist operation ${op.body.id}: ${messageOf(err)}`);
    }
  }

  get(id: string): Operation {
    return this.#find(id).body;
  }

  list(): Operation[] {
    return [...this.#ops.values()].map((o) => o.body);
  }

  /** Waits until the operation finishes or `timeoutSec` passes (-1 = forever). */
  async wait(id: string, timeoutSec = -1): Promise<Operation> {
    const op = this.#find(id);
    if (!op.finished) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waits: Promise<unknown>[] = [op.done];
      // Beyond what a timer can hold (~24.8 days) is as good as forever.
      if (timeoutSec >= 0 && timeoutSec * 1000 < 2 ** 31) {
        waits.push(new Promise((r) => timer = setTimeout(r, timeoutSec * 1000)));
      }
      await Promise.race(waits);
      clearTimeout(timer);
    }
    return op.body;
  }

  /** Connects a websocket to a running websocket-class operation. */
  connect(id: string, secret: string, upgrade: UpgradeWebSocket): Response {
    const op = this.#find(id);
    if (op.finished) throw new BadRequest(`Operation "${id}" has finished`);
    if (!op.websocket) throw new BadRequest(`Operation "${id}" has no websockets`);
    const res = op.websocket(secret, upgrade);
    if (!res) throw new Forbidden("Invalid websocket secret");
    return res;
  }

  cancel(id: string): Operation {
    const op = this.#find(id);
    if (op.finished) return op.body;
    if (!op.body.may_cancel) {
      throw new BadRequest(`Operation "${id}" cannot be cancelled`);
    }
    op.abort.abort();
    op.set("cancelled", { err: "Operation cancelled" });
    this.#publish(op);
    this.#retire(op);
    return op.body;
  }

  #find(id: string): TrackedOperation {
    const op = this.#ops.get(id);
    if (!op) throw new NotFound(`Operation "${id}" not found`);
    return op;
  }
}
