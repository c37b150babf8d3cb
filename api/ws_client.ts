/** A websocket client over the daemon's unix socket (Deno's WebSocket cannot dial one). */
// @ts-types="@types/ws"
import WebSocket from "ws";

export { WebSocket };

/** Opens `path` (e.g. `/1.0/events?type=lifecycle`) on the unix socket at `socket`. */
export function openUnixWebSocket(socket: string, path: string): WebSocket {
  return new WebSocket(`ws+unix://${socket}:${path}`);
}
