/**
 * An instance's live state on the wire (Incus's `InstanceState`): what drivers measure, the
 * server renders (`GET /1.0/instances/{name}/state`, `recursion=2`) and clients read. Strict, as
 * the answers in responses.ts are.
 */
import { z } from "zod";

export const PowerStateSchema = z.enum(["Running", "Stopped", "Frozen", "Error"]);
export type PowerState = z.infer<typeof PowerStateSchema>;

/** Incus's numeric status codes for each power state. */
export const STATUS_CODES: Record<PowerState, number> = {
  Running: 103,
  Stopped: 102,
  Frozen: 110,
  Error: 112,
};

export const NetworkAddressSchema = z.strictObject({
  family: z.enum(["inet", "inet6"]),
  address: z.string(),
  netmask: z.string(),
  scope: z.string(),
});
export type NetworkAddress = z.infer<typeof NetworkAddressSchema>;

export const NetworkStateSchema = z.strictObject({
  addresses: z.array(NetworkAddressSchema),
  counters: z.strictObject({
    bytes_received: z.number(),
    bytes_sent: z.number(),
    packets_received: z.number(),
    packets_sent: z.number(),
    errors_received: z.number(),
    errors_sent: z.number(),
    packets_dropped_inbound: z.number(),
    packets_dropped_outbound: z.number(),
  }),
  hwaddr: z.string(),
  host_name: z.string(),
  mtu: z.number(),
  state: z.enum(["up", "down"]),
  type: z.string(),
});
export type NetworkState = z.infer<typeof NetworkStateSchema>;

/** What a driver measures of a running (or stopped) instance. */
export const InstanceRuntimeSchema = z.strictObject({
  status: PowerStateSchema,
  pid: z.number(),
  processes: z.number(),
  memory: z.strictObject({
    usage: z.number(),
    usage_peak: z.number(),
    swap_usage: z.number(),
    swap_usage_peak: z.number(),
  }),
  cpu: z.strictObject({ usage: z.number() }),
  network: z.record(z.string(), NetworkStateSchema),
});
export type InstanceRuntime = z.infer<typeof InstanceRuntimeSchema>;

/** `GET /1.0/instances/{name}/state`. */
export const InstanceStateSchema = InstanceRuntimeSchema.extend({
  status_code: z.number(),
  disk: z.record(z.string(), z.strictObject({ usage: z.number() })),
});
export type InstanceState = z.infer<typeof InstanceStateSchema>;
