import assert from "node:assert/strict";
import { frame, FrameReader } from "./udp_frame.ts";

Deno.test("frames keep each datagram whole, however the stream cuts them", () => {
  const datagrams = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(65507).fill(7)];
  const stream = new Uint8Array(datagrams.reduce((n, d) => n + 6 + d.length, 0));
  let off = 0;
  for (const [i, d] of datagrams.entries()) {
    const f = frame(i + 1, d);
    stream.set(f, off);
    off += f.length;
  }
  for (const cut of [1, 5, 7, 1000, stream.length]) {
    const reader = new FrameReader();
    const got: { id: number; payload: Uint8Array }[] = [];
    for (let at = 0; at < stream.length; at += cut) {
      got.push(...reader.push(stream.subarray(at, at + cut)));
    }
    assert.deepEqual(got.map((g) => g.id), [1, 2, 3], `cut ${cut}`);
    assert.deepEqual(got.map((g) => g.payload.length), [3, 0, 65507]);
    assert.deepEqual(got[0].payload, datagrams[0]);
  }
});
