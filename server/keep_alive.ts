/** What keeps a server process up: a log that never throws, and a net under uncaught errors. */

/** A log line on stderr, with the time first. */
export function timestamped(msg: string): void {
  console.error(`${new Date().toISOString()} ${msg}`);
}

/**
 * A log that never throws: writing a log line can fail (the log's disk is full, its pipe is
 * gone), and a request must not fail, nor the server stop, because a line could not be written.
 */
export function neverThrows(log: (msg: string) => void): (msg: string) => void {
  return (msg) => {
    try {
      log(msg);
    } catch { /* the line is lost, the server goes on */ }
  };
}

/**
 * The last line of defence: an error no handler caught is logged and the server goes on. Each is
 * a bug to fix, never a reason to stop serving every other client.
 */
export function keepAliveOnUncaught(log: (msg: string) => void): () => void {
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    log(`error: unhandled rejection: ${e.reason instanceof Error ? e.reason.stack : e.reason}`);
  };
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    log(`error: uncaught: ${e.error instanceof Error ? e.error.stack : e.message}`);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return () => {
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
  };
}
