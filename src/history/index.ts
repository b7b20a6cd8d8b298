/**
 * The history capability's front door: what the daemon (replication and retention after a backup),
 * status and metrics (the replication state, the catalog), and the fleet view (a target's boxes,
 * their stores and catalogs) use. Nothing else in history/ is imported from outside the folder.
 */
export {
  CATALOG_FILES,
  type CatalogEntry,
  type CatalogHead,
  catalogFiles,
  catalogView,
  type VerifiedCatalog,
  verifyCatalog,
} from './catalog.js';
export { checkHistoryConfig } from './check.js';
export { BOX_NAME, boxTarget, listBoxes } from './fleet-layout.js';
export { retentionAfterTake } from './prune.js';
export type { RepoFile, Store } from './repo-store.js';
export { gatherHistoryStatus, type HistoryStatus, hours } from './status.js';
export { openStore } from './stores.js';
export { historyAfterBackup } from './take.js';
