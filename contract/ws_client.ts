/** The daemon's websockets over its unix socket: the event stream and an operation's fds. */
import { connectUnix, type WebSocketClient } from "./websocket.ts";

export {
  connectUnix,
  HandshakeError,
  type Message,
  WebSocketClient,
  WebSocketError,
} from "./websocket.ts";

/** Subscribes to `/1.0/events`, of the given comma-separated types (all when none). */
export function openEvents(socket: string, types?: string): Promise<WebSocketClient> {
  const query = types ? `?type=${encodeURIComponent(types)}` : "";
  return connectUnix(socket, `/1.0/events${query}`);
}

/** Connects to one websocket of an operation (`fds` secret), failing with a clear message. */
export async function openOperationSocket(
  socket: string,
  opId: string,
  secret: string,
): Promise<WebSocketClient> {
  const path = `/1.0/operations/${encodeURIComponent(opId)}/websocket?secret=${
    encodeURIComponent(secret)
  }`;
  try {
    return await connectUnix(socket, path);
  } catch (err) {
    throw new Error(`Operation websocket failed: ${err instanceof Error ? err.message : err}`);
  }
}
