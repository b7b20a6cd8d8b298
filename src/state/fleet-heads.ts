import path from 'node:path';
import { writeJsonAtomic } from '../system/atomic-file.js';
import type { Writes } from '../system/writes.js';
import { readJson } from './store.js';

/**
 * The catalog head `fleet status` last verified for each box of a target, on the machine that
 * runs it (never on the target: a box can rewrite its own folder there, signature and all).
 */
export interface FleetHeads {
  boxes: Record<string, { count: number; last: string; verifiedAt: string }>;
}

export const fleetHeadsFile = (stateDir: string, target: string) =>
  path.join(stateDir, `fleet-heads-${target}.json`);

export function readFleetHeads(stateDir: string, target: string): FleetHeads {
  const doc = readJson<FleetHeads>(fleetHeadsFile(stateDir, target));
  return doc && typeof doc.boxes === 'object' && doc.boxes !== null ? doc : { boxes: {} };
}

export function writeFleetHeads(writes: Writes, stateDir: string, target: string, heads: FleetHeads): void {
  writeJsonAtomic(writes, fleetHeadsFile(stateDir, target), heads, 0o600);
}
