/** The daily schedule, in local time (the appliance's time zone). Pure functions of a clock reading. */
export interface TimeOfDay {
  hour: number;
  minute: number;
}

/** The most recent moment at or before `now` when the local clock showed `at`. */
export function lastOccurrence(now: Date, at: TimeOfDay): Date {
  const d = new Date(now);
  d.setHours(at.hour, at.minute, 0, 0);
  if (d.getTime() > now.getTime()) d.setDate(d.getDate() - 1);
  return d;
}

/** The next moment after `now` when the local clock shows `at`. */
export function nextOccurrence(now: Date, at: TimeOfDay): Date {
  const d = new Date(now);
  d.setHours(at.hour, at.minute, 0, 0);
  if (d.getTime() <= now.getTime()) d.setDate(d.getDate() + 1);
  return d;
}

export interface DueInput {
  now: Date;
  at: TimeOfDay;
  /** Time of the newest restore point (whatever its reason), or null when there is none. */
  lastBackup: Date | null;
  /** When the daemon started. */
  startedAt: Date;
  catchUp: boolean;
}

/**
 * Is the daily backup due? It is when the newest restore point is older than the last scheduled
 * moment. Without catch-up, only a scheduled moment that passed while the daemon ran counts (a box
 * that was off at 03:00 then waits for the next 03:00).
 */
export function dailyDue(input: DueInput): boolean {
  const slot = lastOccurrence(input.now, input.at);
  if (input.lastBackup && input.lastBackup.getTime() >= slot.getTime()) return false;
  if (!input.catchUp && slot.getTime() < input.startedAt.getTime()) return false;
  return true;
}

/** When the daemon will next take the daily backup, given the same facts. */
export function nextDailyRun(input: DueInput): Date {
  return dailyDue(input) ? input.now : nextOccurrence(input.now, input.at);
}
