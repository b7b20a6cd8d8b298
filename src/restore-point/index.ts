/**
 * The snapshot capability's front door: what other capabilities use of snap0 (taking a backup under
 * the lock, its rotation, repair and health, the boot menu that lists it). Nothing else in
 * snapshot/ is imported from outside the folder; the names (tags, snapshot names) are in names/.
 */
export { type BackupOutcome, backupLocked, repairIfNeeded, runBackup } from './backup.js';
export { refreshBootMenu } from './boot-menu-refresh.js';
export { type Health, type HealthLevel, snapshotHealth } from './health.js';
export { type LastBackup, readLastBackup } from './last-backup.js';
export { describeCutRotation, repairCutRotation, stateAfterRepair } from './repair.js';
export { labelOf, planRotation, requireRoot } from './rotation.js';
