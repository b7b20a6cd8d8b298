// A file already on the remote under its final name, checked against the local one by SHA-256
// (remote copy's verification of what an earlier run sent).
import { open } from 'node:fs/promises';
import path from 'node:path/posix';
import type { LocalFile } from './files.js';
import type { RemoteSession } from './session.js';
import { remoteSha256 } from './remote-hash.js';
import { hashFile, identityOf, LocalChangedError } from './transfer.js';

export interface CopyCheck {
  matches: boolean;
  localSha256: string;
  remoteSha256: string;
  /** How the checksum was taken on the remote. */
  by: string;
  /** The local file's identity while it was hashed. */
  identity: string;
}

/** Compare a file already on the remote under its final name with the local one, by SHA-256. */
export async function checkRemoteCopy(opts: {
  session: RemoteSession;
  file: LocalFile;
  destination: string;
  signal?: AbortSignal;
}): Promise<CopyCheck> {
  const { session, file, signal } = opts;
  const local = await open(file.path, 'r');
  try {
    const identity = identityOf(await local.stat({ bigint: true }));
    const [mine, theirs] = await Promise.all([
      hashFile(local, file.size, file.path, signal),
      remoteSha256(session, path.join(opts.destination, file.name), file.size, signal),
    ]);
    if (identityOf(await local.stat({ bigint: true })) !== identity) {
      throw new LocalChangedError(`${file.path} changed while its remote copy was being checked`);
    }
    return {
      matches: mine === theirs.sum,
      localSha256: mine,
      remoteSha256: theirs.sum,
      by: theirs.by,
      identity,
    };
  } finally {
    await local.close();
  }
}
