/**
 * The remote capability's front door: the daemon's copy off the box after a backup or an image.
 * Nothing else in remote/ is imported from outside the folder; the SSH transport it drives is the
 * shared layer src/ssh/, the key files' secrets src/system/secrets.ts.
 */
export { copyAfterJob } from './copy.js';
