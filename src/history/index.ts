/**
 * The history capability's front door: what the daemon (replication and retention after a backup),
 * status and metrics (the replication state, the catalog), the recoveries from it (recovery/:
 * `recover fingerprint`, `recover offbox`: the catalog, the stores, the tree restore, the recovery
 * file) and the fleet view (a target's boxes, their stores and catalogs) use. Nothing else in
 * history/ is imported from outside the folder.
 */
export {
  CATALOG_FILES,
  type CatalogEntry,
  type CatalogHead,
  type CatalogView,
  catalogFiles,
  catalogView,
  type VerifiedCatalog,
  verifyCatalog,
} from './catalog.js';
export { checkHistoryConfig } from './check.js';
export { BOX_NAME, boxTarget, listBoxes } from './fleet-layout.js';
export { retentionAfterTake } from './prune.js';
export { FW_CFG_RECOVERY_FILE, readRecoveryFile } from './recovery-file.js';
export { resticFor } from './repo.js';
export { type RepoFile, type Store, snapshotIdsIn } from './repo-store.js';
export { RepositoryPasswordError } from './restic.js';
export { gatherHistoryStatus, type HistoryStatus, hours } from './status.js';
export { parseS3Spec } from './s3-target.js';
export { openStore } from './stores.js';
export { historyAfterBackup } from './take.js';
export {
  checkFingerprint,
  openSource,
  type RestoreSource,
  resolveFingerprint,
  restoreTree,
  type TreeRestoreOptions,
} from './tree-restore.js';
