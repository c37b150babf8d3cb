/** A websocket client over the daemon's unix socket (Deno's WebSocket cannot dial one). */
// @ts-types="@types/ws"
import WebSocket from "ws";

export { WebSocket };

/** Opens `path` (e.g. `/1.0/events?type=lifecycle`) on the unix socket at `socket`. */
export function openUnixWebSocket(socket: string, path: string): WebSocket {
  return new WebSocket(`ws+unix://${socket}:${path}`);
}

/** Connects to one websocket of an operation (`fds` secret), failing with a clear message. */
export function openOperationSocket(
  socket: string,
  opId: string,
  secret: string,
): Promise<WebSocket> {
  const ws = openUnixWebSocket(socket, `/1.0/operations/${opId}/websocket?secret=${secret}`);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once(
      "error",
      (err: Error) => reject(new Error(`Operation websocket failed: ${err.message}`)),
    );
  });
}
