/** Typed domain errors. The API maps each to an HTTP status in one place (server/envelope.ts). */
export class DomainError extends Error {
  readonly status: number = 500;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The request is malformed or names an invalid value (HTTP 400). */
export class BadRequest extends DomainError {
  override readonly status = 400;
}

/** The caller may not do this (HTTP 403). */
export class Forbidden extends DomainError {
  override readonly status = 403;
}

/** The named thing does not exist (HTTP 404). */
export class NotFound extends DomainError {
  override readonly status = 404;
}

/** The name is taken or the thing is in use (HTTP 409). */
export class Conflict extends DomainError {
  override readonly status = 409;
}

/** The action does not fit the current state (HTTP 409, as Incus answers). */
export class InvalidState extends DomainError {
  override readonly status = 409;
}

/** The request body is larger than the limit (HTTP 413). */
export class PayloadTooLarge extends DomainError {
  override readonly status = 413;
}

/** The host has no room to store what was asked (HTTP 507). */
export class InsufficientStorage extends DomainError {
  override readonly status = 507;
}

/** An `If-Match` precondition did not hold (HTTP 412). */
export class PreconditionFailed extends DomainError {
  override readonly status = 412;
}

/** The server cannot do this now, or at all in this build (HTTP 503). */
export class Unavailable extends DomainError {
  override readonly status = 503;
}

/** The message of any thrown value, for logs and error envelopes. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A caller that failed too often, told to wait. */
export class TooManyRequests extends DomainError {
  override readonly status = 429;
}
