import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Writes } from '../system/writes.js';

/**
 * Small JSON state files, written atomically (temp file, fsync, rename) so a power cut leaves old or
 * new. Refused in a dry run (`writes`).
 */
export function writeJsonAtomic(writes: Writes, file: string, value: unknown, mode = 0o644): void {
  writes.allow(`write ${file}`);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, `${JSON.stringify(value, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

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
