/**
 * How datagrams travel between the daemon and a UDP relay over a byte stream: a session id
 * (u32, big-endian), a length (u16) and the datagram, so each keeps its boundaries.
 */

/** The hidden subcommand a compiled outpost runs its UDP relay with. */
export const UDP_RELAY_SUBCOMMAND = "__udprelay";

/** Bytes of datagrams queued for a pipe or socket beyond which new ones are dropped (UDP may). */
export const MAX_QUEUED = 1024 * 1024;

/** At most this many sessions (clients) per proxy device. */
export const MAX_SESSIONS = 256;
/** A session unused this long is closed (its socket freed). */
export const SESSION_IDLE_MS = 60_000;

const HEADER = 6;

export function frame(id: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, id);
  view.setUint16(4, payload.length);
  out.set(payload, HEADER);
  return out;
}

/** Cuts a byte stream back into frames; a frame split across chunks waits for the rest. */
export class FrameReader {
  #buf = new Uint8Array(0);

  push(chunk: Uint8Array): { id: number; payload: Uint8Array }[] {
    const joined = new Uint8Array(this.#buf.length + chunk.length);
    joined.set(this.#buf);
    joined.set(chunk, this.#buf.length);
    const frames: { id: number; payload: Uint8Array }[] = [];
    let off = 0;
    while (joined.length - off >= HEADER) {
      const view = new DataView(joined.buffer, off);
      const len = view.getUint16(4);
      if (joined.length - off < HEADER + len) break;
      frames.push({
        id: view.getUint32(0),
        payload: joined.slice(off + HEADER, off + HEADER + len),
      });
      off += HEADER + len;
    }
    this.#buf = joined.slice(off);
    return frames;
  }
}
