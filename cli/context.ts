/** What every command shares: the state dir, the API client, and the exit code for main.ts. */
import { ApiClient } from "../contract/client.ts";
import { resolveStateDir, socketPath } from "../contract/state_dir.ts";

export class CliContext {
  exitCode = 0;
  #client?: ApiClient;

  constructor(private stateDirFlag?: () => string | undefined) {}

  get stateDir(): string {
    return resolveStateDir(this.stateDirFlag?.());
  }

  get client(): ApiClient {
    this.#client ??= new ApiClient(socketPath(this.stateDir));
    return this.#client;
  }

  close(): void {
    this.#client?.close();
  }
}

/** An error the CLI prints as one line (exit code 1). */
export class UsageError extends Error {}

/** Parses repeated `key=value` arguments into a map. */
export function parseKeyValues(items: string[], what = "config"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const i = item.indexOf("=");
    if (i <= 0) throw new UsageError(`Invalid ${what} "${item}": expected key=value`);
    out[item.slice(0, i)] = item.slice(i + 1);
  }
  return out;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function parseIntOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n)) {
      throw new UsageError(`Invalid ${name} "${value}": expected a whole number`);
    }
    return n;
  };
}
