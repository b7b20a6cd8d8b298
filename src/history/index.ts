/**
 * The history capability's front door: what the daemon (replication and retention after a backup),
 * status and metrics (the replication state, the catalog) use. Nothing else in history/ is imported
 * from outside the folder.
 */
export { catalogView, verifyCatalog } from './catalog.js';
export { checkHistoryConfig } from './check.js';
export { retentionAfterTake } from './prune.js';
export { gatherHistoryStatus, type HistoryStatus, hours } from './status.js';
export { historyAfterBackup } from './take.js';
