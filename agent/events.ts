/**
 * The event bus behind `/1.0/events`: operation, lifecycle and logging events. A subscriber that
 * is a socket gets a bounded send queue: one that stops reading is dropped, never buffered for.
 * Events are shaped as contract/events.ts describes them.
 */
import type { EventMetadata, EventType, OutpostEvent } from "../contract/events.ts";
import type { LifecycleAction } from "../contract/lifecycle.ts";

export type Listener = (event: OutpostEvent) => void;

/** Where a subscriber's events go: a WebSocket, or anything that counts what it has not sent. */
export interface EventSink {
  /** `1` (WebSocket.OPEN) while events can be sent. */
  readonly readyState: number;
  /** Bytes given to `send()` that have not been written out yet. */
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code: number, reason: string): void;
}

export interface SinkOptions {
  /** Dropped when more than this many bytes would wait unsent (default 4 MiB). */
  maxBufferedBytes?: number;
  /**
   * Dropped when more than this many events would wait unsent (default 4,096): each waiting
   * send costs the runtime about 1 KiB besides its bytes.
   */
  maxBufferedEvents?: number;
  /** Names the subscriber in the log. */
  label?: string;
  log?: (msg: string) => void;
}

const OPEN = 1;
/** The close code for a dropped subscriber (4000–4999 is for applications; 1008 mirrored). */
export const SLOW_SUBSCRIBER_CODE = 4008;

interface Entry {
  types: Set<EventType>;
  /** `json` serialises the event, once for every subscriber. */
  fn: (event: OutpostEvent, json: () => string) => void;
  /** Ends the subscription from the bus's side (the daemon stops). */
  end?: () => void;
}

export class EventBus {
  #listeners = new Set<Entry>();

  /** Subscribes to the given types; returns the unsubscribe function. */
  subscribe(types: EventType[], fn: Listener): () => void {
    return this.#add({ types: new Set(types), fn: (event) => fn(event) });
  }

  /**
   * Sends the given types to `sink` as JSON text, while it keeps up: a sink with more than the
   * limits waiting unsent is closed with a reason, unsubscribed and logged. Returns the
   * unsubscribe function (call it when the sink closes).
   */
  subscribeSink(types: EventType[], sink: EventSink, opts: SinkOptions = {}): () => void {
    const maxBytes = opts.maxBufferedBytes ?? 4 * 2 ** 20;
    const maxEvents = opts.maxBufferedEvents ?? 4096;
    const log = opts.log ?? console.error;
    /** Sends since the sink was last seen with nothing unsent. */
    let waiting = 0;
    let unsubscribe = () => {};
    const drop = (why: string) => {
      unsubscribe();
      log(`events: dropping slow subscriber (${opts.label ?? "websocket"}: ${why})`);
      try {
        sink.close(SLOW_SUBSCRIBER_CODE, "Too slow: events were sent faster than they were read");
      } catch { /* already closing */ }
    };
    const end = () => {
      unsubscribe();
      try {
        sink.close(1000, "The daemon is stopping");
      } catch { /* already closing */ }
    };
    unsubscribe = this.#add({
      types: new Set(types),
      end,
      fn: (_event, json) => {
        if (sink.readyState !== OPEN) return;
        const data = json();
        const buffered = sink.bufferedAmount;
        if (buffered === 0) waiting = 0;
        // One event over the byte limit still goes to a sink that has caught up.
        if (buffered > 0 && buffered + data.length > maxBytes) {
          return drop(`${buffered} bytes unsent, the limit is ${maxBytes}`);
        }
        if (waiting >= maxEvents) {
          return drop(`${waiting} events unsent, the limit is ${maxEvents}`);
        }
        sink.send(data);
        waiting++;
      },
    });
    return unsubscribe;
  }

  #add(entry: Entry): () => void {
    this.#listeners.add(entry);
    return () => this.#listeners.delete(entry);
  }

  emit<T extends EventType>(type: T, metadata: EventMetadata<T>): void {
    // The signature pairs the type with its metadata, which TypeScript cannot follow here.
    const event = {
      type,
      timestamp: new Date().toISOString(),
      metadata,
      location: "none",
      project: "default",
    } as unknown as OutpostEvent;
    let text: string | undefined;
    const json = () => text ??= JSON.stringify(event);
    for (const l of this.#listeners) {
      if (!l.types.has(type)) continue;
      try {
        l.fn(event, json);
      } catch {
        // A broken listener (a closed websocket) must not stop the others.
      }
    }
  }

  /** A lifecycle event as Incus shapes it (`instance-started`, `image-created`, ...). */
  lifecycle(action: LifecycleAction, source: string, context: Record<string, unknown> = {}): void {
    this.emit("lifecycle", { action, source, context, requestor: null });
  }

  /** Closes every sink subscriber (the daemon is stopping: an open socket would hold it up). */
  close(): void {
    for (const l of [...this.#listeners]) l.end?.();
  }

  get size(): number {
    return this.#listeners.size;
  }
}
