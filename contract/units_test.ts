import assert from "node:assert/strict";
import { parseByteSize, parseCpuSet } from "./units.ts";

Deno.test("parseByteSize() reads a bare number as bytes", () => {
  assert.equal(parseByteSize("512"), 512);
  assert.equal(parseByteSize("0"), 0);
  assert.equal(parseByteSize("512B"), 512);
});

Deno.test("parseByteSize() reads decimal and binary units", () => {
  assert.equal(parseByteSize("1kB"), 1000);
  assert.equal(parseByteSize("1GB"), 1_000_000_000);
  assert.equal(parseByteSize("2TB"), 2e12);
  assert.equal(parseByteSize("1KiB"), 1024);
  assert.equal(parseByteSize("64MiB"), 67_108_864);
  assert.equal(parseByteSize("1GiB"), 2 ** 30);
  assert.equal(parseByteSize("1EiB"), 2 ** 60);
});

Deno.test("parseByteSize() takes fractions and rounds down to whole bytes", () => {
  assert.equal(parseByteSize("1.5GiB"), 1.5 * 2 ** 30);
  assert.equal(parseByteSize("0.5KiB"), 512);
  assert.equal(parseByteSize("1.5B"), 1);
  assert.equal(parseByteSize("0.001kB"), 1);
});

Deno.test("parseByteSize() allows surrounding space and a space before the unit", () => {
  assert.equal(parseByteSize("  64MiB  "), 67_108_864);
  assert.equal(parseByteSize("64 MiB"), 67_108_864);
});

Deno.test("parseByteSize() refuses unknown units and malformed numbers", () => {
  for (
    const value of ["", " ", "MiB", "64XB", "64Mi", "-1", "-1GB", "1e3", ".5GiB", "1.", "1,5GB"]
  ) {
    assert.equal(parseByteSize(value), undefined, `"${value}" should be refused`);
  }
});

Deno.test("parseByteSize() is case-sensitive about units", () => {
  // Incus spells the units exactly: "kB", "MiB"; "KB" and "mib" are not units.
  assert.equal(parseByteSize("64mib"), undefined);
  assert.equal(parseByteSize("1gb"), undefined);
});

Deno.test({
  name: "parseByteSize() refuses a unit named like an Object.prototype member",
  fn() {
    for (const value of ["1toString", "1constructor", "1valueOf", "1hasOwnProperty"]) {
      assert.equal(parseByteSize(value), undefined, `"${value}" should be refused`);
    }
  },
});

Deno.test("parseCpuSet() reads single CPUs and ranges, sorted", () => {
  assert.deepEqual(parseCpuSet("0"), [0]);
  assert.deepEqual(parseCpuSet("0-2,4"), [0, 1, 2, 4]);
  assert.deepEqual(parseCpuSet("0-1,3"), [0, 1, 3]);
  assert.deepEqual(parseCpuSet("7,2,5"), [2, 5, 7]);
  assert.deepEqual(parseCpuSet("3-3"), [3]);
});

Deno.test("parseCpuSet() merges overlapping parts without duplicates", () => {
  assert.deepEqual(parseCpuSet("0-3,2-5,1"), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(parseCpuSet("1,1,1"), [1]);
});

Deno.test("parseCpuSet() tolerates space around parts", () => {
  assert.deepEqual(parseCpuSet(" 0-1 , 3 "), [0, 1, 3]);
});

Deno.test("parseCpuSet() refuses reversed ranges and malformed parts", () => {
  for (
    const value of ["", ",", "0,", ",1", "3-1", "a", "1-", "-1", "0-1-2", "1.5", "0--1", "0 1"]
  ) {
    assert.equal(parseCpuSet(value), undefined, `"${value}" should be refused`);
  }
});
