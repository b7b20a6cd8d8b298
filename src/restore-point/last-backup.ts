import path from 'node:path';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { type BackupRecord, lastBackupFile, readJson } from '../state/store.js';
import { writeJsonAtomic } from '../system/atomic-file.js';
import type { Writes } from '../system/writes.js';

/**
 * Where the last backup's outcome is kept, and how `status` decides what to believe.
 *
 * The record used to live only in stateDir (/var/lib/zshield), inside lv-root: "Recover to latest
 * backup" merges snap0 back into lv-root and so puts back the record as it was when snap0 was
 * taken, and status would show that older backup as the last. Now the record is written beside
 * the event log first (/boot/zshield by default: the system disk's /boot partition, outside
 * lv-root, so a rollback does not touch it), and to stateDir as well (the fallback when /boot is
 * not writable, and what earlier versions read). Status takes the newer of the two, then checks it
 * against snap0's own tags (zshield_time=, zshield_reason=, in the VG metadata, which no restore
 * rolls back): a snap0 newer than every record (the post-restore backup, taken from the golden
 * medium where this system's records are not mounted; a factory reset's first one) is the last
 * backup, whatever the files say; a record whose snapshot is gone or was replaced says so.
 */

export interface BackupRecordV2 extends BackupRecord {
  /** On success: the snapshot's own time (its zshield_time= tag), to match the record with snap0. */
  snapshotTime?: string;
}

/** The record beside the event log (outside lv-root). */
export function bootRecordFile(config: Config): string {
  return path.join(path.dirname(config.paths.eventLog), 'last-backup.json');
}

/** The record in stateDir (inside lv-root: rolled back by a restore). */
export function stateRecordFile(config: Config): string {
  return lastBackupFile(config.paths.stateDir);
}

/**
 * Write the outcome of a backup run to both places. A place that cannot be written is a warning,
 * never a failure of the backup (from the read-only golden medium neither can be: status then
 * learns of the backup from snap0's tags).
 */
export function writeBackupRecord(writes: Writes, config: Config, log: Logger, rec: BackupRecordV2): void {
  const attempt = (file: string): string | null => {
    try {
      writeJsonAtomic(writes, file, rec);
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  };
  const boot = bootRecordFile(config);
  const state = stateRecordFile(config);
  const bootErr = attempt(boot);
  const stateErr = state === boot ? bootErr : attempt(state);
  if (bootErr && stateErr) {
    log.warn(
      `could not record the backup result (${bootErr}; ${stateErr}); status reads snap0's tags instead`,
    );
  } else if (bootErr) {
    log.warn(
      `could not record the backup result in ${boot} (${bootErr}); kept in ${state} only, which a restore rolls back`,
    );
  } else if (stateErr) {
    log.debug(`could not record the backup result in ${state}: ${stateErr}`);
  }
}

/** What `status` shows as the last backup. */
export interface LastBackup extends BackupRecordV2 {
  /** Where this came from: a record file, or snap0's tags when no record knows of it. */
  from: string;
  /** What snap0 says against the record (its snapshot gone, replaced, overflowed), or null. */
  note: string | null;
}

/** snap0 as probed: its tag time and reason, whether it is a usable restore point. */
export interface SnapshotSeen {
  /** vg/lv. */
  name: string;
  time: Date | null;
  reason: string | null;
  valid: boolean;
}

const seconds = (d: Date | string) => Math.floor(new Date(d).getTime() / 1000);

/**
 * The last backup, from the two records and snap0 (null when snap0 was not probed: no VG). Pure:
 * the reading is done by `readLastBackup`.
 */
export function judgeLastBackup(
  records: { file: string; rec: BackupRecordV2 | null }[],
  snap: SnapshotSeen | null,
  snapProbed: boolean,
): LastBackup | null {
  let best: { file: string; rec: BackupRecordV2 } | null = null;
  for (const r of records) {
    if (!r.rec || typeof r.rec.at !== 'string' || Number.isNaN(Date.parse(r.rec.at))) continue;
    // Ties go to the first (the record outside lv-root).
    if (!best || Date.parse(r.rec.at) > Date.parse(best.rec.at)) best = { file: r.file, rec: r.rec };
  }
  // A snapshot's time tag is the second its run started: a run that started after it is newer.
  if (snap?.time && (!best || seconds(snap.time) > seconds(best.rec.at))) {
    return {
      result: 'ok',
      reason: snap.reason ?? 'unknown',
      at: snap.time.toISOString(),
      durationMs: 0,
      snapshot: snap.name,
      snapshotTime: snap.time.toISOString(),
      from: `${snap.name} tags`,
      note: `known from ${snap.name}'s tags only, no record of the run here (a restore or factory reset takes it from the golden medium)${
        best ? `; the newest record is of ${best.rec.at}` : ''
      }${snap.valid ? '' : `; ${snap.name} is INVALID`}`,
    };
  }
  if (!best) return null;
  const out: LastBackup = { ...best.rec, from: best.file, note: null };
  if (best.rec.result !== 'ok' || !snapProbed) return out;
  const taken = seconds(best.rec.snapshotTime ?? best.rec.at);
  const name = best.rec.snapshot ?? snap?.name ?? 'the snapshot';
  if (!snap) out.note = `${name} no longer exists (merged by a restore, or removed)`;
  else if (snap.time && seconds(snap.time) < taken) {
    out.note = `${name} is not this backup any more (it is of ${snap.time.toISOString()})`;
  } else if (!snap.valid) out.note = `${name} is INVALID (overflowed): not a usable restore point`;
  return out;
}

/** Read both records and judge them against snap0. */
export function readLastBackup(
  config: Config,
  snap: SnapshotSeen | null,
  snapProbed: boolean,
): LastBackup | null {
  const files = [bootRecordFile(config), stateRecordFile(config)];
  return judgeLastBackup(
    [...new Set(files)].map((file) => ({ file, rec: readJson<BackupRecordV2>(file) })),
    snap,
    snapProbed,
  );
}
