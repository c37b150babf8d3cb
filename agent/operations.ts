/**
 * Incus operations: every long verb runs as one, is visible at /1.0/operations/{id}, can be
 * waited on, and reports each state change as an `operation` event.
 */
import type { EventBus } from "./events.ts";
import { BadRequest, Forbidden, messageOf, NotFound } from "./errors.ts";
import type { Store } from "./store.ts";

export type OperationClass = "task" | "websocket" | "token";

export const Status = {
  created: [100, "Operation created"],
  running: [103, "Running"],
  success: [200, "Success"],
  failure: [400, "Failure"],
  cancelled: [401, "Cancelled"],
} as const;
type StatusName = keyof typeof Status;

export interface OperationBody {
  id: string;
  class: OperationClass;
  description: string;
  created_at: string;
  updated_at: string;
  status: string;
  status_code: number;
  resources: Record<string, string[]> | null;
  metadata: Record<string, unknown> | null;
  may_cancel: boolean;
  err: string;
  location: string;
}

export interface OperationContext {
  /** Aborted when the operation is cancelled. */
  signal: AbortSignal;
  /** Merges into the operation's metadata and emits an update. */
  update(metadata: Record<string, unknown>): void;
}

export interface OperationSpec {
  description: string;
  class?: OperationClass;
  resources?: Record<string, string[]>;
  metadata?: Record<string, unknown>;
  mayCancel?: boolean;
  run: (ctx: OperationContext) => Promise<Record<string, unknown> | void>;
  /** For websocket operations: upgrades a request carrying a valid secret, else undefined. */
  websocket?: (secret: string, req: Request) => Response | undefined;
}

class Operation {
  body: OperationBody;
  readonly websocket?: (secret: string, req: Request) => Response | undefined;
  readonly done: Promise<void>;
  readonly abort = new AbortController();
  #resolve!: () => void;

  constructor(spec: OperationSpec) {
    const now = new Date().toISOString();
    this.body = {
      id: crypto.randomUUID(),
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

  set(status: StatusName, patch: Partial<OperationBody> = {}): void {
    const [code, text] = Status[status];
    this.body = {
      ...this.body,
      ...patch,
      status: text,
      status_code: code,
      updated_at: new Date().toISOString(),
    };
    if (this.finished) this.#resolve();
  }
}

/** How long finished operations stay listed (Incus keeps them about as long). */
const KEEP_FINISHED_MS = 5 * 60_000;

export class Operations {
  #ops = new Map<string, Operation>();

  constructor(private events: EventBus, private store?: Store, private log = console.error) {}

  /** Starts `spec.run` in the background and returns the operation's first body. */
  start(spec: OperationSpec): OperationBody {
    const op = new Operation(spec);
    this.#ops.set(op.body.id, op);
    op.set("running");
    this.#publish(op);
    const ctx: OperationContext = {
      signal: op.abort.signal,
      update: (metadata) => {
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

  async #run(op: Operation, spec: OperationSpec, ctx: OperationContext): Promise<void> {
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
    setTimeout(() => this.#ops.delete(op.body.id), KEEP_FINISHED_MS).unref?.();
  }

  #publish(op: Operation): void {
    this.events.emit("operation", op.body);
    try {
      this.store?.putOperation(op.body.id, op.body, op.body.updated_at);
    } catch (err) {
      this.log(`Could not persist operation ${op.body.id}: ${messageOf(err)}`);
    }
  }

  get(id: string): OperationBody {
    return this.#find(id).body;
  }

  list(): OperationBody[] {
    return [...this.#ops.values()].map((o) => o.body);
  }

  /** Waits until the operation finishes or `timeoutSec` passes (-1 = forever). */
  async wait(id: string, timeoutSec = -1): Promise<OperationBody> {
    const op = this.#find(id);
    if (!op.finished) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waits: Promise<unknown>[] = [op.done];
      if (timeoutSec >= 0) waits.push(new Promise((r) => timer = setTimeout(r, timeoutSec * 1000)));
      await Promise.race(waits);
      clearTimeout(timer);
    }
    return op.body;
  }

  /** Connects a websocket to a running websocket-class operation. */
  connect(id: string, secret: string, req: Request): Response {
    const op = this.#find(id);
    if (op.finished) throw new BadRequest(`Operation "${id}" has finished`);
    if (!op.websocket) throw new BadRequest(`Operation "${id}" has no websockets`);
    const res = op.websocket(secret, req);
    if (!res) throw new Forbidden("Invalid websocket secret");
    return res;
  }

  cancel(id: string): OperationBody {
    const op = this.#find(id);
    if (op.finished) return op.body;
    if (!op.body.may_cancel) {
      throw new BadRequest(`Operation "${id}" cannot be cancelled`);
    }
    op.abort.abort();
    op.set("cancelled", { err: "Operation cancelled" });
    this.#publish(op);
    return op.body;
  }

  #find(id: string): Operation {
    const op = this.#ops.get(id);
    if (!op) throw new NotFound(`Operation "${id}" not found`);
    return op;
  }
}
