import assert from "node:assert/strict";
import { dueBetween, matches, parseSchedule } from "./schedule.ts";

const at = (iso: string) => new Date(iso);

Deno.test("parseSchedule() takes cron fields and the @ macros, and refuses the rest", () => {
  for (const ok of ["* * * * *", "*/15 * * * *", "0 3 * * 1-5", "5,35 */2 1 1-6/2 7", "@daily"]) {
    assert.ok(parseSchedule(ok), ok);
  }
  for (
    const bad of [
      "",
      "* * * *",
      "60 * * * *",
      "* 24 * * *",
      "* * 0 * *",
      "5-1 * * * *",
      "@often",
      "*/0 * * * *",
      "a * * * *",
    ]
  ) {
    assert.equal(parseSchedule(bad), undefined, bad);
  }
});

Deno.test("matches() names the minutes of a schedule, in UTC, with cron's either-day rule", () => {
  const s = parseSchedule("30 2 * * *")!;
  assert.ok(matches(s, at("2030-01-05T02:30:10Z")));
  assert.ok(!matches(s, at("2030-01-05T02:31:00Z")));
  const weekdays = parseSchedule("0 9 * * 1-5")!;
  assert.ok(matches(weekdays, at("2030-01-07T09:00:00Z"))); // a Monday
  assert.ok(!matches(weekdays, at("2030-01-06T09:00:00Z"))); // a Sunday
  const either = parseSchedule("0 0 1 * 0")!; // the 1st, or any Sunday
  assert.ok(matches(either, at("2030-01-01T00:00:00Z")));
  assert.ok(matches(either, at("2030-01-06T00:00:00Z")));
  assert.ok(!matches(either, at("2030-01-07T00:00:00Z")));
  assert.ok(matches(parseSchedule("@hourly")!, at("2030-01-07T13:00:59Z")));
  assert.ok(matches(parseSchedule("0 0 * * 7")!, at("2030-01-06T00:00:00Z")), "7 is Sunday too");
});

Deno.test("dueBetween() sees a scheduled minute a late tick would skip", () => {
  const s = parseSchedule("0 * * * *")!;
  assert.ok(dueBetween(s, at("2030-01-01T09:59:30Z"), at("2030-01-01T10:00:40Z")));
  assert.ok(dueBetween(s, at("2030-01-01T09:58:59Z"), at("2030-01-01T10:01:01Z")));
  assert.ok(!dueBetween(s, at("2030-01-01T10:00:10Z"), at("2030-01-01T10:01:10Z")));
});
