import assert from "node:assert/strict";
import { devName, parseBlkioV1, parseIoStat } from "./blkio.ts";

Deno.test("parseBlkioV1() takes read and write bytes and operations per device, and skips totals", () => {
  const bytes =
    "254:0 Read 4096\n254:0 Write 1048576\n254:0 Sync 0\n254:0 Total 1052672\nTotal 1052672\n";
  const ops = "254:0 Read 1\n254:0 Write 8\n254:0 Total 9\nTotal 9\n";
  assert.deepEqual(Object.fromEntries(parseBlkioV1(bytes, ops)), {
    "254:0": { readBytes: 4096, reads: 1, writtenBytes: 1048576, writes: 8 },
  });
  assert.equal(parseBlkioV1("Total 0\n", "Total 0\n").size, 0);
});

Deno.test("parseIoStat() reads cgroup v2's io.stat", () => {
  const text = "8:0 rbytes=512 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n";
  assert.deepEqual(Object.fromEntries(parseIoStat(text)), {
    "8:0": { readBytes: 512, reads: 1, writtenBytes: 2048, writes: 2 },
  });
});

Deno.test("devName() reads DEVNAME from a uevent, and nothing from garbage", () => {
  assert.equal(devName("MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"), "vda");
  assert.equal(devName("DEVNAME=has space\n"), undefined);
  assert.equal(devName(undefined), undefined);
});
