/**
 * The clone capability's front door: the golden update handoff the guest side (recovery/) reads and
 * answers, and the checks `config check` runs for the clone section. Nothing else in clone/ is
 * imported from outside the folder.
 */
export { checkCloneConfig } from './check.js';
export { type HandoffRequest, readRequest, writeResult } from './update-handoff.js';
