/** Request bodies exactly as real clients send them, shared by the tests that parse or send them. */

/** The Incus 6.0 client's rename (`incus rename c1 c2`): POST /1.0/instances/c1. */
export const INCUS6_RENAME = {
  name: "c2",
  migration: false,
  live: false,
  instance_only: false,
  target: null,
  pool: "",
  project: "",
  allow_inconsistent: false,
  Config: null,
  Devices: null,
  Profiles: null,
};
