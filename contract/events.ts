/**
 * The events `/1.0/events` sends (Incus's `Event`): operation, lifecycle and logging events, one
 * JSON text frame each. Strict, as the answers in responses.ts are.
 */
import { z } from "zod";
import { LIFECYCLE_ACTIONS } from "./lifecycle.ts";
import { type Operation, OperationSchema } from "./responses.ts";

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

/** The fields every event has besides its type and metadata. */
const EVENT_FIELDS = { timestamp: z.string(), location: z.string(), project: z.string() };

export const EventSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("operation"), metadata: OperationSchema, ...EVENT_FIELDS }),
  z.strictObject({ type: z.literal("lifecycle"), metadata: LifecycleEventSchema, ...EVENT_FIELDS }),
  z.strictObject({ type: z.literal("logging"), metadata: LoggingEventSchema, ...EVENT_FIELDS }),
]);
/** An event as sent (named so it does not shadow the DOM's `Event`). */
export type OutpostEvent = z.infer<typeof EventSchema>;

/** The metadata of each event type (a plain map: cheaper for the type checker than `Extract`). */
interface EventMetadataByType {
  operation: Operation;
  lifecycle: LifecycleEvent;
  logging: LoggingEvent;
}
/** The metadata an event of type `T` carries. */
export type EventMetadata<T extends EventType> = EventMetadataByType[T];
