/**
 * The clone capability's front door: the golden update handoff the guest side (recovery/) reads and
 * answers. Nothing else in clone/ is imported from outside the folder.
 */
export { type HandoffRequest, readRequest, writeResult } from './update-handoff.js';
