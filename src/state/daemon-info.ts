import path from 'node:path';
import { readJson } from './store.js';
import { writeJsonAtomic } from '../system/atomic-file.js';
import { pidAlive } from '../system/lock.js';
import type { Writes } from '../system/writes.js';

/** What the running daemon publishes in the run directory for `status`. */
export interface DaemonInfo {
  pid: number;
  startedAt: string;
  /** When the next daily backup is planned (ISO). */
  nextRun: string | null;
  lastCheck: string | null;
  /** The last health judgement, e.g. "warn: snap0 is 85% full". */
  lastHealth: string | null;
}

export const daemonInfoFile = (runDir: string) => path.join(runDir, 'daemon.json');

export function writeDaemonInfo(writes: Writes, runDir: string, info: DaemonInfo): void {
  writeJsonAtomic(writes, daemonInfoFile(runDir), info);
}

/** The daemon's info when a daemon with that pid still runs, else null. */
export function readLiveDaemon(runDir: string): DaemonInfo | null {
  const info = readJson<DaemonInfo>(daemonInfoFile(runDir));
  return info && typeof info.pid === 'number' && pidAlive(info.pid) ? info : null;
}
