import assert from "node:assert/strict";
import {
  type Column,
  formatBytes,
  formatDuration,
  FORMATS,
  parseFormat,
  renderList,
  renderTable,
} from "./format.ts";
import { renderYaml } from "./yaml.ts";

interface Row {
  name: string;
  state: string;
  ipv4: string;
  type: string;
}

const columns: Column<Row>[] = [
  { header: "NAME", value: (r) => r.name },
  { header: "STATE", value: (r) => r.state },
  { header: "IPV4", value: (r) => r.ipv4 },
  { header: "TYPE", value: (r) => r.type },
];

const c1: Row = { name: "c1", state: "RUNNING", ipv4: "", type: "CONTAINER" };

Deno.test("table centres headers and left-aligns cells like lxc list", async () => {
  assert.equal(
    await renderList("table", [c1], columns),
    [
      "+------+---------+------+-----------+",
      "| NAME |  STATE  | IPV4 |   TYPE    |",
      "+------+---------+------+-----------+",
      "| c1   | RUNNING |      | CONTAINER |",
      "+------+---------+------+-----------+",
      "",
    ].join("\n"),
  );
});

Deno.test("table puts each line of a multi-line cell on its own physical line", async () => {
  const row: Row = {
    name: "web",
    state: "RUNNING",
    ipv4: "10.0.0.2 (eth0)\n10.0.1.2 (eth1)",
    type: "VM",
  };
  assert.equal(
    await renderList("table", [row, c1], columns),
    [
      "+------+---------+-----------------+-----------+",
      "| NAME |  STATE  |      IPV4       |   TYPE    |",
      "+------+---------+-----------------+-----------+",
      "| web  | RUNNING | 10.0.0.2 (eth0) | VM        |",
      "|      |         | 10.0.1.2 (eth1) |           |",
      "| c1   | RUNNING |                 | CONTAINER |",
      "+------+---------+-----------------+-----------+",
      "",
    ].join("\n"),
  );
});

Deno.test("table without rows still shows the headers", () => {
  assert.equal(
    renderTable(["NAME", "STATE"], []),
    ["+------+-------+", "| NAME | STATE |", "+------+-------+", ""].join("\n"),
  );
});

Deno.test("table measures widths in code points", () => {
  assert.equal(
    renderTable(["N"], [["héllo🚀"]]),
    ["+--------+", "|   N    |", "+--------+", "| héllo🚀 |", "+--------+", ""].join("\n"),
  );
});

Deno.test("compact has no borders, left-aligned headers and no trailing spaces", async () => {
  const row: Row = { name: "a-long-name", state: "STOPPED", ipv4: "", type: "VM" };
  assert.equal(
    await renderList("compact", [c1, row], columns),
    [
      "NAME         STATE    IPV4  TYPE",
      "c1           RUNNING        CONTAINER",
      "a-long-name  STOPPED        VM",
      "",
    ].join("\n"),
  );
});

Deno.test("csv quotes commas, quotes and newlines and has no header row", async () => {
  const rows: Row[] = [
    c1,
    { name: 'say "hi"', state: "a,b", ipv4: "1.2.3.4\n5.6.7.8", type: "cr\rhere" },
  ];
  assert.equal(
    await renderList("csv", rows, columns),
    'c1,RUNNING,,CONTAINER\n"say ""hi""","a,b","1.2.3.4\n5.6.7.8","cr\rhere"\n',
  );
  assert.equal(await renderList("csv", [], columns), "");
});

Deno.test("json renders the raw API objects on one line", async () => {
  const raw = [{ name: "c1", status: "Running", config: { "limits.cpu": "2" } }];
  assert.equal(await renderList("json", [c1], columns, raw), `${JSON.stringify(raw)}\n`);
  assert.equal(await renderList("json", [c1], columns), `${JSON.stringify([c1])}\n`);
  assert.equal(await renderList("json", [], columns), "[]\n");
});

Deno.test("yaml renders the raw API objects without document markers", async () => {
  const raw = [{ name: "c1", description: "line one\nline two" }];
  assert.equal(
    await renderList("yaml", [c1], columns, raw),
    "- name: c1\n  description: |-\n    line one\n    line two\n",
  );
  assert.equal(await renderList("yaml", [], columns), "[]\n");
  assert.equal(renderYaml("text\n"), "|\ntext\n");
  assert.equal(renderYaml({ a: 1 }), "a: 1\n");
});

Deno.test("formatBytes uses binary units with two decimals above bytes", () => {
  assert.equal(formatBytes(0), "0B");
  assert.equal(formatBytes(512), "512B");
  assert.equal(formatBytes(1023), "1023B");
  assert.equal(formatBytes(1024), "1.00KiB");
  assert.equal(formatBytes(1.5 * 1024 ** 2), "1.50MiB");
  assert.equal(formatBytes(2 * 1024 ** 3), "2.00GiB");
  assert.equal(formatBytes(1024 ** 2 - 1), "1.00MiB");
  assert.equal(formatBytes(3 * 1024 ** 4), "3.00TiB");
  assert.equal(formatBytes(-2048), "-2.00KiB");
});

Deno.test("formatDuration prints hours, minutes and seconds like Go", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(45), "45s");
  assert.equal(formatDuration(59.6), "1m0s");
  assert.equal(formatDuration(83), "1m23s");
  assert.equal(formatDuration(3600), "1h0m0s");
  assert.equal(formatDuration(7205), "2h0m5s");
  assert.equal(formatDuration(100 * 3600 + 61), "100h1m1s");
  assert.equal(formatDuration(-90), "-1m30s");
});

Deno.test("parseFormat accepts every format and names the choices on error", () => {
  for (const f of FORMATS) assert.equal(parseFormat(f), f);
  assert.throws(() => parseFormat("xml"), {
    message: 'Unknown format "xml": use one of table, json, yaml, csv, compact',
  });
});
