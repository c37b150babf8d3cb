/**
 * The audit log: one JSON line per mutating call (time, who, method, path, status) in
 * `STATE_DIR/audit.log`, rotated to `audit.log.1` past a size, so it never grows without bound.
 * Who is `unix` (the socket), a client certificate's fingerprint, or `untrusted ADDRESS`.
 */
import { appendFileSync, renameSync, statSync } from "node:fs";

/** The log is rotated once it passes this size; one rotated file is kept. */
export const MAX_AUDIT_BYTES = 8 * 2 ** 20;

export interface AuditEntry {
  /** `unix`, a certificate fingerprint, or `untrusted ADDRESS`. */
  who: string;
  method: string;
  path: string;
  status: number;
}

export class AuditLog {
  #size = -1;

  constructor(
    readonly file: string,
    private log: (msg: string) => void = () => {},
    private maxBytes = MAX_AUDIT_BYTES,
  ) {}

  /** Appends one entry; a write that fails is reported in the daemon's log, never thrown. */
  record(entry: AuditEntry, now = new Date()): void {
    const line = JSON.stringify({ time: now.toISOString(), ...entry }) + "\n";
    try {
      if (this.#size < 0) {
        try {
          this.#size = statSync(this.file).size;
        } catch {
          this.#size = 0;
        }
      }
      if (this.#size + line.length > this.maxBytes) {
        renameSync(this.file, `${this.file}.1`);
        this.#size = 0;
      }
      appendFileSync(this.file, line, { mode: 0o600 });
      this.#size += line.length;
    } catch (err) {
      this.#size = -1;
      this.log(`audit log: ${err instanceof Error ? err.message : err}`);
    }
  }
}
