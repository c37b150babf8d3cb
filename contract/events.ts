/**
 * The events `/1.0/events` sends (Incus's `Event`): operation, lifecycle and logging events, one
 * JSON text frame each. Strict, as the answers in responses.ts are.
 */
import { z } from "zod";
import { LIFECYCLE_ACTIONS } from "./lifecycle.ts";
import { OperationSchema } from "./responses.ts";

/** The event types a client can ask for (`?type=`); all of them by default. */
export const EVENT_TYPES = ["operation", "lifecycle", "logging"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The metadata of a `lifecycle` event: what happened (`action`) to what (`source`, a URL). */
export const LifecycleEventSchema = z.strictObject({
  action: z.enum(LIFECYCLE_ACTIONS),
  source: z.string(),
  context: z.record(z.string(), z.unknown()),
  /** Who asked: not recorded yet. */
  requestor: z.null(),
});
export type LifecycleEvent = z.infer<typeof LifecycleEventSchema>;

/** The metadata of a `logging` event. */
export const LoggingEventSchema = z.strictObject({
  message: z.string(),
  level: z.string(),
  context: z.record(z.string(), z.string()),
});
export type LoggingEvent = z.infer<typeof LoggingEventSchema>;

function eventOf<T extends EventType, M extends z.ZodType>(type: T, metadata: M) {
  return z.strictObject({
    type: z.literal(type),
    timestamp: z.string(),
    metadata,
    location: z.string(),
    project: z.string(),
  });
}

export const EventSchema = z.discriminatedUnion("type", [
  eventOf("operation", OperationSchema),
  eventOf("lifecycle", LifecycleEventSchema),
  eventOf("logging", LoggingEventSchema),
]);
/** An event as sent (named so it does not shadow the DOM's `Event`). */
export type OutpostEvent = z.infer<typeof EventSchema>;
/** The metadata an event of type `T` carries. */
export type EventMetadata<T extends EventType> = Extract<OutpostEvent, { type: T }>["metadata"];
