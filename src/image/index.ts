/**
 * The image capability's front door: what the daemon, status, recovery and history use of image
 * backups (taking one, listing them, the identity of a restored image, finishing a restore cut by a
 * power loss). Nothing else in image/ is imported from outside the folder.
 */
export { runImageCreate } from './create.js';
export { hostKind, listImages } from './files.js';
export { type Identity, parseIdentity } from './identity.js';
export { writeIdentity } from './identity-write.js';
export { runningImageJob } from './job.js';
export { listedImages } from './prune.js';
export { resumeImageRestore } from './image-restore.js';
export { describeUnfinished, rootHalfWritten, unfinishedImageRestore } from './restore-mark.js';
