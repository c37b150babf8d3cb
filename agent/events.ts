/** The event bus behind `/1.0/events`: operation, lifecycle and logging events. */
export type EventType = "operation" | "lifecycle" | "logging";

export interface OutpostEvent {
  type: EventType;
  timestamp: string;
  metadata: unknown;
  location: string;
  project: string;
}

export type Listener = (event: OutpostEvent) => void;

export class EventBus {
  #listeners = new Set<{ types: Set<EventType>; fn: Listener }>();

  /** Subscribes to the given types; returns the unsubscribe function. */
  subscribe(types: EventType[], fn: Listener): () => void {
    const entry = { types: new Set(types), fn };
    this.#listeners.add(entry);
    return () => this.#listeners.delete(entry);
  }

  emit(type: EventType, metadata: unknown): void {
    const event: OutpostEvent = {
      type,
      timestamp: new Date().toISOString(),
      metadata,
      location: "none",
      project: "default",
    };
    for (const l of this.#listeners) {
      if (!l.types.has(type)) continue;
      try {
        l.fn(event);
      } catch {
        // A broken listener (a closed websocket) must not stop the others.
      }
    }
  }

  /** A lifecycle event as Incus shapes it (`instance-started`, `image-created`, ...). */
  lifecycle(action: string, source: string, context: Record<string, unknown> = {}): void {
    this.emit("lifecycle", { action, source, context, requestor: null });
  }

  get size(): number {
    return this.#listeners.size;
  }
}
