import { readFileSync } from 'node:fs';
import path from 'node:path';
import { writePrivateFileAtomic } from '../system/atomic-file.js';
import type { Writes } from '../system/writes.js';

/**
 * What zshield knows of each target, kept beside the local repository (outside lv-root): shown by
 * `history status`, and what retention asks before forgetting a snapshot (never one that has not
 * reached every target).
 */

export interface TargetState {
  /** Fingerprints whose snapshot file the target held after the last successful run. */
  snapshots: string[];
  /** The newest of those (by the catalog's backup times). */
  newest: string | null;
  /** Bytes of local repository files the target lacked when last listed. */
  bytesBehind: number;
  /** Bytes sent to it by the last run. */
  lastSent: number;
  lastAttempt: string | null;
  lastSuccess: string | null;
  lastError: string | null;
  /** Where the rotating verification goes on next time (an index into the sorted file list). */
  verifyCursor: number;
  lastVerified: string | null;
  /** Entries of the catalog copy last given to it: a copy there with fewer was rolled back. */
  catalogCount: number;
}

export type HistoryState = Record<string, TargetState>;

export const stateFile = (dir: string) => path.join(dir, 'targets.json');

export function emptyTargetState(): TargetState {
  return {
    snapshots: [],
    newest: null,
    bytesBehind: 0,
    lastSent: 0,
    lastAttempt: null,
    lastSuccess: null,
    lastError: null,
    verifyCursor: 0,
    lastVerified: null,
    catalogCount: 0,
  };
}

export function readState(dir: string): HistoryState {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(stateFile(dir), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    // A damaged state file costs only a re-listing of every target: start over.
    return {};
  }
  const out: HistoryState = {};
  if (raw && typeof raw === 'object')
    for (const [k, v] of Object.entries(raw as Record<string, Partial<TargetState>>))
      out[k] = { ...emptyTargetState(), ...v };
  return out;
}

export function writeState(writes: Writes, dir: string, state: HistoryState): void {
  writePrivateFileAtomic(writes, stateFile(dir), `${JSON.stringify(state, null, 2)}\n`);
}

/** Read, change one target's entry, write (each target's run saves as it goes). */
export function updateTarget(
  writes: Writes,
  dir: string,
  name: string,
  change: (s: TargetState) => void,
): TargetState {
  const state = readState(dir);
  const s = state[name] ?? emptyTargetState();
  change(s);
  state[name] = s;
  writeState(writes, dir, state);
  return s;
}

/**
 * The fewest entries an honest copy of the catalog can hold: the least this box gave any target,
 * or (a box without targets.json, restoring from targets) the head it last used. A signed head
 * with fewer is a rollback.
 */
export const seenFile = (dir: string) => path.join(dir, 'catalog.seen.json');

export function readSeenHead(dir: string): { count: number } | null {
  // A target's copy lags the local catalog by the entries appended after it was sent (another
  // target's arrival): the least any target was given is what every honest copy holds at least.
  const given = Object.values(readState(dir))
    .map((s) => s.catalogCount)
    .filter((n) => n > 0);
  if (given.length) return { count: Math.min(...given) };
  try {
    const count = Number((JSON.parse(readFileSync(seenFile(dir), 'utf8')) as { count?: unknown }).count);
    return Number.isInteger(count) && count >= 0 ? { count } : null;
  } catch {
    return null; // absent or unreadable: nothing seen
  }
}

export function writeSeenHead(writes: Writes, dir: string, count: number): void {
  writePrivateFileAtomic(writes, seenFile(dir), `${JSON.stringify({ count })}\n`);
}
