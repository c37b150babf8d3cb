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

// deno-lint-ignore no-control-regex
const ALIAS = /^[^\s/:\u0000-\u001f\u007f]{1,255}$/;

/**
 * Image alias names: no whitespace, control characters, `/` or `:` (which the CLI uses for
 * remotes), and not `.` or `..` (they would name another URL).
 */
export function checkAliasName(name: string): string {
  if (!ALIAS.test(name) || name === "." || name === "..") {
    throw new BadRequest(
      `Invalid alias name "${
        name.slice(0, 80)
      }": no spaces, control characters, "/" or ":", and not "." or ".."`,
    );
  }
  return name;
}
