/**
 * The daemon's websockets: the event stream and an operation's fds, over the unix socket at a
 * path or over whatever an API client dials (an HTTPS remote alike).
 */
import { type ByteConn, connectUnix, WebSocketClient } from "./websocket.ts";

export {
  connectUnix,
  HandshakeError,
  type Message,
  WebSocketClient,
  WebSocketError,
} from "./websocket.ts";

/** Where a websocket goes: a unix socket path, or something that dials (an `ApiClient`). */
export type Dialer = string | {
  dial(): Promise<ByteConn>;
  transport: { host: string };
  /** Put before the path (a host's API through a hub). */
  basePath?: string;
};

function open(to: Dialer, path: string): Promise<WebSocketClient> {
  if (typeof to === "string") return connectUnix(to, path);
  return WebSocketClient.connect(() => to.dial(), {
    path: (to.basePath ?? "") + path,
    host: to.transport.host,
  });
}

/** Subscribes to `/1.0/events`, of the given comma-separated types (all when none). */
export function openEvents(to: Dialer, types?: string): Promise<WebSocketClient> {
  const query = types ? `?type=${encodeURIComponent(types)}` : "";
  return open(to, `/1.0/events${query}`);
}

/** Connects to one websocket of an operation (`fds` secret), failing with a clear message. */
export async function openOperationSocket(
  to: Dialer,
  opId: string,
  secret: string,
): Promise<WebSocketClient> {
  const path = `/1.0/operations/${encodeURIComponent(opId)}/websocket?secret=${
    encodeURIComponent(secret)
  }`;
  try {
    return await open(to, path);
  } catch (err) {
    throw new Error(`Operation websocket failed: ${err instanceof Error ? err.message : err}`);
  }
}
