/**
 * The daemon capability's front door: what status reads of the daemon (whether it runs, when the
 * next daily backup is due). Nothing else in daemon/ is imported from outside the folder.
 */
export { readLiveDaemon } from './info.js';
export { nextDailyRun } from './schedule.js';
