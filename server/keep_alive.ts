/** What keeps a server process up when a bug throws where nothing catches it. */

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
