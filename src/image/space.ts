import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { type DeviceNumber, deviceOf } from '../system/mounts.js';

function nearestExisting(dir: string): string {
  let d = path.resolve(dir);
  while (!existsSync(d) && d !== path.dirname(d)) d = path.dirname(d);
  return d;
}

/**
 * Bytes an unprivileged writer can still use in the file system holding `dir` (f_bavail: the
 * blocks reserved for root are not counted, so the check errs on the safe side). A directory not
 * made yet is measured at its nearest existing parent.
 */
export function freeBytesAt(dir: string): number {
  const s = statfsSync(nearestExisting(dir));
  return Number(s.bavail) * Number(s.bsize);
}

/** The device of the file system that holds (or will hold) `dir`. */
export function deviceOfDir(dir: string): DeviceNumber | null {
  return deviceOf(nearestExisting(dir));
}
