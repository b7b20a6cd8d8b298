import { describe, expect, it } from 'vitest';
import {
  type DueInput,
  dailyDue,
  lastOccurrence,
  nextDailyRun,
  nextOccurrence,
} from '../../src/state/schedule.js';

// Every moment is built with the local-time constructor, so these hold in any time zone (the
// schedule is in the appliance's local time). November has no DST change in common zones.
const at3 = { hour: 3, minute: 0 };
const d = (day: number, h: number, m = 0, s = 0, month = 10, year = 2026) =>
  new Date(year, month, day, h, m, s);

describe('lastOccurrence / nextOccurrence', () => {
  it('later the same day', () => {
    expect(lastOccurrence(d(21, 10), at3)).toEqual(d(21, 3));
    expect(nextOccurrence(d(21, 10), at3)).toEqual(d(22, 3));
  });

  it('earlier the same day', () => {
    expect(lastOccurrence(d(21, 1, 30), at3)).toEqual(d(20, 3));
    expect(nextOccurrence(d(21, 1, 30), at3)).toEqual(d(21, 3));
  });

  it('exactly at the slot: last is now, next is tomorrow', () => {
    expect(lastOccurrence(d(21, 3), at3)).toEqual(d(21, 3));
    expect(nextOccurrence(d(21, 3), at3)).toEqual(d(22, 3));
    expect(nextOccurrence(d(21, 2, 59, 59), at3)).toEqual(d(21, 3));
  });

  it('around midnight', () => {
    const late = { hour: 23, minute: 30 };
    expect(lastOccurrence(d(22, 0, 10), late)).toEqual(d(21, 23, 30));
    expect(nextOccurrence(d(21, 23, 40), late)).toEqual(d(22, 23, 30));
    const midnight = { hour: 0, minute: 0 };
    expect(lastOccurrence(d(21, 23, 59, 59), midnight)).toEqual(d(21, 0));
    expect(nextOccurrence(d(21, 23, 59, 59), midnight)).toEqual(d(22, 0));
    expect(lastOccurrence(d(22, 0), midnight)).toEqual(d(22, 0));
  });

  it('across month and year ends', () => {
    expect(lastOccurrence(d(1, 1, 0, 0, 11), at3)).toEqual(d(30, 3, 0, 0, 10));
    expect(nextOccurrence(d(31, 4, 0, 0, 11), at3)).toEqual(new Date(2027, 0, 1, 3, 0));
    expect(lastOccurrence(new Date(2027, 0, 1, 2, 0), at3)).toEqual(d(31, 3, 0, 0, 11));
  });
});

describe('dailyDue / nextDailyRun', () => {
  const base = (over: Partial<DueInput>): DueInput => ({
    now: d(21, 10),
    at: at3,
    lastBackup: d(20, 3, 0, 5),
    startedAt: d(19, 12),
    catchUp: true,
    ...over,
  });

  it('due once the slot passed and the newest backup is older', () => {
    expect(dailyDue(base({}))).toBe(true);
    expect(nextDailyRun(base({}))).toEqual(d(21, 10));
  });

  it('not due before the slot', () => {
    const input = base({ now: d(21, 2, 59) });
    expect(dailyDue(input)).toBe(false);
    expect(nextDailyRun(input)).toEqual(d(21, 3));
  });

  it('a backup taken after the slot (any reason) counts', () => {
    const input = base({ lastBackup: d(21, 5) });
    expect(dailyDue(input)).toBe(false);
    expect(nextDailyRun(input)).toEqual(d(22, 3));
    expect(dailyDue(base({ lastBackup: d(21, 3) }))).toBe(false);
  });

  it('a backup taken before the slot the same day does not', () => {
    expect(dailyDue(base({ now: d(21, 3, 0, 30), lastBackup: d(21, 2) }))).toBe(true);
  });

  it('no backup at all: due', () => {
    expect(dailyDue(base({ lastBackup: null }))).toBe(true);
  });

  it('catch-up on: a box that was off at 03:00 backs up when the daemon starts', () => {
    expect(dailyDue(base({ now: d(21, 9), startedAt: d(21, 9), lastBackup: d(19, 3) }))).toBe(true);
  });

  it('catch-up off: a slot missed while off waits for the next one', () => {
    const input = base({ now: d(21, 9), startedAt: d(21, 9), lastBackup: d(19, 3), catchUp: false });
    expect(dailyDue(input)).toBe(false);
    expect(nextDailyRun(input)).toEqual(d(22, 3));
    // ...and once the daemon has been running across 03:00, it is due.
    expect(dailyDue({ ...input, now: d(22, 3, 0, 1) })).toBe(true);
  });

  it('catch-up off: a slot passed while the daemon ran is due', () => {
    expect(dailyDue(base({ now: d(21, 3, 1), startedAt: d(21, 2, 50), catchUp: false }))).toBe(true);
    expect(dailyDue(base({ now: d(21, 3, 0), startedAt: d(21, 3, 0), catchUp: false }))).toBe(true);
  });

  it('around midnight with a 23:30 slot', () => {
    const late = { hour: 23, minute: 30 };
    expect(dailyDue(base({ at: late, now: d(22, 0, 15), lastBackup: d(21, 1) }))).toBe(true);
    expect(dailyDue(base({ at: late, now: d(22, 0, 15), lastBackup: d(21, 23, 31) }))).toBe(false);
    expect(nextDailyRun(base({ at: late, now: d(22, 0, 15), lastBackup: d(21, 23, 31) }))).toEqual(
      d(22, 23, 30),
    );
  });
});
