import { readFileSync } from 'node:fs';
import path from 'node:path';

export function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

export interface BackupRecord {
  result: 'ok' | 'failed';
  reason: string;
  /** When the run started (ISO). */
  at: string;
  durationMs: number;
  /** On success: the snapshot made. */
  snapshot?: string;
  sizeBytes?: number;
  /** On failure: the one-line error. */
  error?: string;
}

export const lastBackupFile = (stateDir: string) => path.join(stateDir, 'last-backup.json');
