/**
 * The status capability's front door: the status report, which metrics renders. Nothing else in
 * status/ is imported from outside the folder.
 */
export { gatherStatus, type StatusReport } from './status.js';
