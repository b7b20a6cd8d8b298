/**
 * The status capability's front door: the box's state, printed (`zshield status`, status.ts) and
 * written for Prometheus from the same report (the text file after every job and the daemon's
 * health check, metrics-write.ts). Nothing else in status/ is imported from outside the folder.
 */
export { writeMetrics } from './metrics-write.js';
