/**
 * Shapes domain records as the Incus API objects clients expect; each view returns its type in
 * contract/responses.ts, so a view that drifts from the contract fails the type check.
 */
import type { ImageStore } from "../agent/images.ts";
import type {
  AliasRecord,
  CertificateRecord,
  ImageRecord,
  InstanceRecord,
  NetworkRecord,
  ProfileRecord,
  SnapshotRecord,
} from "../agent/store.ts";
import type { NetworkLease as Lease } from "../agent/networks.ts";
import type { Expanded } from "../agent/profiles.ts";
import { NEVER } from "../agent/snapshots.ts";
import {
  type InstanceRuntime,
  type InstanceState,
  type PowerState,
  STATUS_CODES,
} from "../contract/instance_state.ts";
import type {
  Certificate,
  Image,
  ImageAliasesEntry,
  Instance,
  InstanceFull,
  InstanceSnapshot,
  Network,
  NetworkLease,
  Profile,
} from "../contract/responses.ts";
import type { InstanceType } from "../contract/schemas.ts";

export function instanceView(
  inst: InstanceRecord,
  status: PowerState,
  expanded: Expanded,
): Instance {
  return {
    architecture: inst.architecture,
    config: inst.config,
    devices: inst.devices,
    ephemeral: inst.ephemeral,
    profiles: inst.profiles,
    stateful: false,
    description: inst.description,
    created_at: inst.created_at,
    expanded_config: expanded.config,
    expanded_devices: expanded.devices,
    name: inst.name,
    status,
    status_code: STATUS_CODES[status],
    last_used_at: inst.last_used_at,
    location: "none",
    type: inst.type,
    project: "default",
  };
}

export function stateView(rt: InstanceRuntime): InstanceState {
  return {
    status: rt.status,
    status_code: STATUS_CODES[rt.status],
    disk: {},
    memory: rt.memory,
    network: rt.network,
    pid: rt.pid,
    processes: rt.processes,
    cpu: rt.cpu,
  };
}

export function fullInstanceView(
  inst: InstanceRecord,
  rt: InstanceRuntime,
  expanded: Expanded,
  snapshots: InstanceSnapshot[] | null,
): InstanceFull {
  return {
    ...instanceView(inst, rt.status, expanded),
    state: stateView(rt),
    snapshots,
    backups: null,
  };
}

export function imageView(image: ImageRecord, images: ImageStore): Image {
  return {
    aliases: images.aliasesOf(image.fingerprint).map((a) => ({
      name: a.name,
      description: a.description,
    })),
    architecture: image.architecture,
    auto_update: false,
    cached: false,
    created_at: image.created_at,
    expires_at: "1970-01-01T00:00:00Z",
    filename: image.filename,
    fingerprint: image.fingerprint,
    last_used_at: image.last_used_at,
    profiles: ["default"],
    properties: image.properties,
    public: image.public,
    size: image.size,
    type: image.type,
    uploaded_at: image.uploaded_at,
    project: "default",
  };
}

/** An alias with the type of the image it names (`GET /1.0/images/aliases/{name}`). */
export function imageAliasView(alias: AliasRecord, type: InstanceType): ImageAliasesEntry {
  return { name: alias.name, description: alias.description, target: alias.target, type };
}

/** A snapshot shaped as Incus's `InstanceSnapshot`. */
export function snapshotView(rec: SnapshotRecord, expanded: Expanded): InstanceSnapshot {
  return {
    name: rec.name,
    description: rec.description,
    created_at: rec.created_at,
    expires_at: rec.expires_at,
    last_used_at: NEVER,
    architecture: rec.architecture,
    config: rec.config,
    devices: rec.devices,
    ephemeral: rec.ephemeral,
    expanded_config: expanded.config,
    expanded_devices: expanded.devices,
    profiles: rec.profiles,
    stateful: false,
    size: -1,
  };
}

/** A trusted certificate shaped as Incus's `Certificate`. */
export function certificateView(rec: CertificateRecord): Certificate {
  return {
    name: rec.name,
    type: rec.type,
    restricted: rec.restricted,
    projects: rec.projects,
    certificate: rec.certificate,
    fingerprint: rec.fingerprint,
    description: rec.description,
  };
}

/** A profile shaped as Incus's `Profile`, with the URLs of the instances that use it. */
export function profileView(rec: ProfileRecord, usedBy: string[]): Profile {
  return {
    name: rec.name,
    description: rec.description,
    config: rec.config,
    devices: rec.devices,
    used_by: usedBy,
    project: "default",
  };
}

/** A managed bridge shaped as Incus's `Network`. */
export function networkView(rec: NetworkRecord, usedBy: string[]): Network {
  return {
    name: rec.name,
    description: rec.description,
    type: rec.type,
    managed: true,
    status: "Created",
    config: rec.config,
    used_by: usedBy,
    locations: ["none"],
    project: "default",
  };
}

export function leaseView(l: Lease): NetworkLease {
  return { ...l, location: "none", project: "default" };
}
