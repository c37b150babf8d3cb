/**
 * The lifecycle actions outpost announces on `/1.0/events` (Incus's names, e.g.
 * `instance-started`): the core emits only these, and clients can match on them. No zod, so the
 * command line may import it at run time.
 */
export const LIFECYCLE_ACTIONS = [
  "config-updated",
  "certificate-created",
  "certificate-updated",
  "certificate-deleted",
  "image-created",
  "image-retrieved",
  "image-deleted",
  "image-alias-created",
  "image-alias-updated",
  "image-alias-deleted",
  "instance-created",
  "instance-started",
  /** A clean stop. */
  "instance-shutdown",
  /** A forced stop (and the stop before a restore). */
  "instance-stopped",
  "instance-restarted",
  "instance-paused",
  "instance-resumed",
  "instance-updated",
  "instance-renamed",
  "instance-deleted",
  "instance-restored",
  "instance-exec",
  /** A console attached (context `type: console`). */
  "instance-console",
  /** The console's log read. */
  "instance-console-retrieved",
  "instance-log-retrieved",
  "instance-log-deleted",
  "instance-file-pushed",
  "instance-file-retrieved",
  "instance-file-deleted",
  "instance-snapshot-created",
  "instance-snapshot-deleted",
  "instance-snapshot-renamed",
  "instance-snapshot-updated",
  "profile-created",
  "profile-updated",
  "profile-renamed",
  "profile-deleted",
  "network-created",
  "network-updated",
  "network-deleted",
  "network-renamed",
  "storage-pool-created",
  "storage-pool-updated",
  "storage-pool-deleted",
  "storage-volume-created",
  "storage-volume-updated",
  "storage-volume-deleted",
] as const;

export type LifecycleAction = (typeof LIFECYCLE_ACTIONS)[number];
