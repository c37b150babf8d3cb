/**
 * The URLs of API objects, as the daemon names them in answers and events and as clients ask for
 * them; every name is percent-encoded. No zod, so the command line may import it at run time.
 */
const enc = encodeURIComponent;

export function instanceUrl(name: string): string {
  return `/1.0/instances/${enc(name)}`;
}

/** A path inside an instance, through the files API. */
export function instanceFileUrl(name: string, path: string): string {
  return `${instanceUrl(name)}/files?path=${enc(path)}`;
}

export function snapshotUrl(instance: string, snap: string): string {
  return `${instanceUrl(instance)}/snapshots/${enc(snap)}`;
}

export function imageUrl(fingerprint: string): string {
  return `/1.0/images/${enc(fingerprint)}`;
}

export function imageAliasUrl(name: string): string {
  return `/1.0/images/aliases/${enc(name)}`;
}

export function operationUrl(id: string): string {
  return `/1.0/operations/${enc(id)}`;
}

/** A file an instance's recorded exec left (`/1.0/instances/NAME/logs/FILE`). */
export function instanceLogUrl(name: string, file: string): string {
  return `${instanceUrl(name)}/logs/${enc(file)}`;
}

export function networkUrl(name: string): string {
  return `/1.0/networks/${enc(name)}`;
}

export function profileUrl(name: string): string {
  return `/1.0/profiles/${enc(name)}`;
}

/** A certificate of the trust store, by its fingerprint. */
export function certificateUrl(fingerprint: string): string {
  return `/1.0/certificates/${enc(fingerprint)}`;
}

/** The fleet hub's API root. */
export const FLEET_API = "/fleet/v1";

export function storagePoolUrl(name: string): string {
  return `/1.0/storage-pools/${enc(name)}`;
}

/** A volume of a pool (`custom/NAME`, `container/NAME`, `image/FINGERPRINT`...). */
export function storageVolumeUrl(pool: string, type: string, name: string): string {
  return `${storagePoolUrl(pool)}/volumes/${enc(type)}/${enc(name)}`;
}
