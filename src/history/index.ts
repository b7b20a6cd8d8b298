/**
 * The history capability's front door: what the daemon (replication and retention after a backup),
 * status and metrics (the replication state, the catalog) and the recoveries from it (recovery/:
 * `recover fingerprint`, `recover offbox`: the catalog, the stores, the tree restore, the recovery
 * file) use. Nothing else in history/ is imported from outside the folder.
 */
export { CATALOG_FILES, type CatalogView, catalogView, verifyCatalog } from './catalog.js';
export { checkHistoryConfig } from './check.js';
export { FW_CFG_RECOVERY_FILE, readRecoveryFile } from './recovery-file.js';
export { resticFor } from './repo.js';
export { snapshotIdsIn } from './repo-store.js';
export { RepositoryPasswordError } from './restic.js';
export { openStore } from './stores.js';
export {
  checkFingerprint,
  openSource,
  type RestoreSource,
  resolveFingerprint,
  restoreTree,
  type TreeRestoreOptions,
} from './tree-restore.js';
export { retentionAfterTake } from './prune.js';
export { gatherHistoryStatus, type HistoryStatus, hours } from './status.js';
export { historyAfterBackup } from './take.js';
