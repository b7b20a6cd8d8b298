import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** One line of the recovery event log (JSON Lines on the system disk's /boot). */
export interface RecoveryEvent {
  at: string;
  event: 'factory-reset' | 'restore' | 'restore-deferred' | 'hooks';
  result: 'ok' | 'failed' | 'pending';
  detail: string;
  /** For a restore: the restore point used. */
  snapshotTime?: string | null;
  snapshotReason?: string | null;
  hooks?: { hook: string; code: number | null }[];
  durationMs?: number;
}

export function appendEvent(file: string, event: RecoveryEvent): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  appendFileSync(file, `${JSON.stringify(event)}\n`, { mode: 0o644 });
}

export function readEvents(file: string): RecoveryEvent[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: RecoveryEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as RecoveryEvent);
    } catch {
      // A line cut by a power failure: skip it, keep the rest.
    }
  }
  return out;
}

/** Where the event log is when the system disk's /boot is mounted at `bootDir` instead of /boot. */
export function eventLogUnder(bootDir: string, eventLog: string): string {
  const rel = path.relative('/boot', eventLog);
  return rel.startsWith('..') ? eventLog : path.join(bootDir, rel);
}
