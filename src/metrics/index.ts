/**
 * The metrics capability's front door: the Prometheus text file written after every job and the
 * daemon's health check. Nothing else in metrics/ is imported from outside the folder.
 */
export { writeMetrics } from './write.js';
