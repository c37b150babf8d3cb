import { BadRequest } from "./errors.ts";

const LABEL = /^[a-zA-Z][a-zA-Z0-9-]{0,62}$/;

/**
 * Instance names are RFC 1123 labels, as Incus requires: 1–63 letters, digits and `-`,
 * starting with a letter and not ending with `-`.
 */
export function checkInstanceName(name: string): string {
  if (!LABEL.test(name) || name.endsWith("-")) {
    throw new BadRequest(
      `Invalid instance name "${name}": use 1-63 letters, digits or "-", starting with a letter and not ending with "-"`,
    );
  }
  return name;
}

const ALIAS = /^[^\s/:]{1,255}$/;

/** Image alias names: no whitespace, `/` or `:` (which the CLI uses for remotes). */
export function checkAliasName(name: string): string {
  if (!ALIAS.test(name)) {
    throw new BadRequest(`Invalid alias name "${name}": no spaces, "/" or ":" allowed`);
  }
  return name;
}
