/**
 * The remote capability's front door: what other capabilities (the daemon's copy after a job,
 * history's SFTP targets and key files) use of the SSH transport, the credentials and the secrets.
 * Nothing else in remote/ is imported from outside the folder.
 */
export { Connection, copyAfterJob } from './copy.js';
export { checkCredentials, loadCredentials, type Target } from './credentials.js';
export {
  checkPrivateFile,
  encryptPassword,
  newKey,
  openPassword,
  readKeyFile,
  writeKeyFile,
} from './secrets.js';
export {
  type Credentials,
  endpointText,
  HostKeyError,
  parsePrivateKey,
  probeHostKey,
  RemoteSession,
} from './ssh.js';
export { RateLimiter, remoteSha256, remoteSha256Many, uploadFile } from './transfer.js';
