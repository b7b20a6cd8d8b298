import { createHash, type Hash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path/posix';
import { InterruptedError, RefusedError, VerifyError } from '../errors.js';
import { formatBytes } from '../config/size.js';
import type { Logger } from '../log/logger.js';
import type { LocalFile } from './files.js';
import { type RemoteSession, type RemoteSpace, SFTP_FAILURE, WRITE_BYTES } from './session.js';
import { TransientRemoteError } from './connect.js';
import { PART_SUFFIX } from '../names/backup-files.js';
import { Progress, type RateLimiter } from './progress.js';
import { remoteSha256 } from './remote-hash.js';

/**
 * One file to the remote: written under `<name>.zshield-part`, continued from the part's size when
 * an earlier try was cut off, checked (size and SHA-256 computed by the remote) and only then
 * renamed to its name. So a remote file with a backup's name is always whole and verified, and a
 * copy stopped at any point costs only the bytes in flight. The local file must still be the bytes
 * sent when the part is renamed: one rewritten in place during the upload is sent again.
 */

/** Write requests in flight: enough to fill a long fat link without acknowledgements stalling it. */
const IN_FLIGHT = 32;
/** Local read size: whole write requests. */
const READ_BYTES = 4 * WRITE_BYTES;

/** The remote's copy is not the local file: the part is removed and the upload starts over. */
export class RemoteMismatchError extends VerifyError {}

/**
 * The local file changed while it was being sent: what reached the remote is not the file as it
 * is now, so the part is removed (never renamed) and the upload starts over.
 */
export class LocalChangedError extends VerifyError {}

/** The remote file system is full (or out of inodes): waiting and trying again does not help. */
export class RemoteNoSpaceError extends RefusedError {}

/**
 * A local file's identity: device, inode, size and the nanosecond mtime and ctime. A write in
 * place changes mtime and ctime (ctime cannot be set back by utimes), a replacement changes the
 * inode. Kernels stamp times with a coarse clock (a few ms), which is why the content is hashed
 * again as well before a copy is accepted.
 */
export function identityOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

export interface UploadOptions {
  session: RemoteSession;
  file: LocalFile;
  destination: string;
  log: Logger;
  /** The command's --json document (ctx.doc): progress then goes to the log file only. */
  doc?: unknown;
  limiter: RateLimiter | null;
  signal?: AbortSignal;
  /**
   * How the part's SHA-256 is taken on the remote (default remoteSha256): a caller with several
   * uploads in flight checks their parts in one round trip (history's SFTP store).
   */
  remoteHash?: (session: RemoteSession, file: string, size: number) => Promise<{ sum: string; by: string }>;
  /** Awaited once the part is verified, before it takes its name (an order the caller keeps). */
  beforeRename?: () => Promise<void>;
  /**
   * The file's SHA-256, known beforehand (a restic file is named by it): the local file is not
   * hashed, and the remote's checksum must be this one, which proves the bytes there whatever
   * happened to the local file meanwhile.
   */
  knownSha256?: string;
}

export interface UploadResult {
  /** Where the upload started (0: from scratch). */
  resumedFrom: number;
  /** Bytes sent in this try. */
  sent: number;
  sha256: string;
  /** How the checksum was taken on the remote. */
  verifiedBy: string;
  /** The local file's identity (identityOf) when it was read, unchanged until the rename. */
  identity: string;
}

type LocalHandle = Awaited<ReturnType<typeof open>>;

export async function uploadFile(opts: UploadOptions): Promise<UploadResult> {
  const { session, file, destination, log, signal } = opts;
  const finalPath = path.join(destination, file.name);
  const partPath = finalPath + PART_SUFFIX;
  const local = await open(file.path, 'r');
  try {
    const st = await local.stat({ bigint: true });
    const identity = identityOf(st);
    const size = Number(st.size);
    if (size !== file.size) {
      throw new LocalChangedError(
        `${file.path} changed size while being copied (${file.size} -> ${size} bytes)`,
        { hint: 'copy again once whatever writes it has finished' },
      );
    }
    let resumedFrom = (await session.size(partPath)) ?? 0;
    if (resumedFrom > size) {
      log.warn(`remote copy: ${partPath} is larger than ${file.path}; starting over`);
      resumedFrom = 0;
    }
    await ensureSpace(session, destination, file.name, size - resumedFrom);
    const hash = opts.knownSha256 === undefined ? createHash('sha256') : null;
    // The checksum covers the whole file: the part already sent is hashed from the local copy (the
    // remote's own checksum at the end catches a part that does not match it).
    if (resumedFrom > 0) {
      log.info(`remote copy: resuming ${file.name} at ${formatBytes(resumedFrom)} of ${formatBytes(size)}`);
      if (hash) await hashRange(local, hash, 0, resumedFrom, file.path, signal);
    }
    const progress = new Progress({ log, doc: opts.doc }, file.name, size, resumedFrom);
    const verify = () =>
      verifyPart({
        rehash: hash !== null,
        session,
        local,
        file,
        partPath,
        size,
        sha256: hash ? hash.digest('hex') : opts.knownSha256!,
        identity,
        signal,
        remoteHash: opts.remoteHash ?? ((s, f, n) => remoteSha256(s, f, n, signal)),
      });
    const { sent, verifiedBy } = await sendPart({
      ...opts,
      local,
      partPath,
      from: resumedFrom,
      size,
      hash,
      progress,
      verify,
    });
    const sha256 = verifiedBy.sha256;
    await opts.beforeRename?.();
    await session.rename(partPath, finalPath);
    progress.update(size);
    return { resumedFrom, sent, sha256, verifiedBy: verifiedBy.by, identity };
  } finally {
    await local.close();
  }
}

/** Refuse before writing when statvfs@openssh.com says the bytes cannot fit. */
export async function ensureSpace(
  session: RemoteSession,
  destination: string,
  what: string,
  need: number,
): Promise<void> {
  if (need <= 0) return;
  const space = await session.space(destination);
  if (space === null) return;
  if (space.availableBytes < need || space.availableFiles < 1)
    throw noSpace(session, destination, what, need, space);
}

function noSpace(
  session: RemoteSession,
  destination: string,
  what: string,
  need: number,
  space: RemoteSpace,
): RemoteNoSpaceError {
  const detail =
    space.availableFiles < 1
      ? `${destination} can hold no more files`
      : `${destination} has ${formatBytes(space.availableBytes)} free, ${what} needs ${formatBytes(need)}`;
  return new RemoteNoSpaceError(`no space on the remote ${session.where}: ${detail}`, {
    hint: 'free space there (or lower remote.limit); a partial upload is kept and resumed by the next copy',
  });
}

/**
 * OpenSSH answers a write into a full file system with the generic "Failure": ask the server how
 * much room is left, and call it what it is when the rest of the file cannot fit.
 */
async function explainFailure(
  err: unknown,
  session: RemoteSession,
  destination: string,
  partPath: string,
  size: number,
): Promise<unknown> {
  if (!(err instanceof TransientRemoteError) || err.sftpCode !== SFTP_FAILURE || session.lost) return err;
  try {
    const space = await session.space(destination);
    if (space === null) return err;
    const need = size - ((await session.size(partPath)) ?? 0);
    if (space.availableFiles < 1 || space.availableBytes < need) {
      return noSpace(session, destination, path.basename(partPath, PART_SUFFIX), need, space);
    }
  } catch {
    // The question failed too: the first failure is the one to report.
  }
  return err;
}

/**
 * Open the part, send the bytes from `from`, then fsync it and prove it (`verify`) at once, and
 * close it; a full disk is named as such. The server flushes the part to its disk while it hashes
 * it from its cache and this side hashes its file again: one after the other, the fsync of 1 GiB
 * and the two checksums were most of what a copy took beyond scp's time. The part is renamed (by
 * the caller) only after both.
 */
async function sendPart<V>(
  a: UploadOptions & {
    local: LocalHandle;
    partPath: string;
    from: number;
    size: number;
    hash: Hash | null;
    progress: Progress;
    verify: () => Promise<V>;
  },
): Promise<{ sent: number; verifiedBy: V }> {
  const { session, partPath } = a;
  try {
    const handle = await session.open(partPath, a.from > 0 ? 'r+' : 'w');
    try {
      const sent = await sendRange({ ...a, handle, name: a.file.path, signal: a.signal });
      const [, verifiedBy] = await Promise.all([session.fsync(handle, partPath), a.verify()]);
      return { sent, verifiedBy };
    } finally {
      await session.closeHandle(handle, partPath).catch(() => {});
    }
  } catch (err) {
    throw await explainFailure(err, session, a.destination, partPath, a.size);
  }
}

/**
 * The part is accepted only if the remote's SHA-256 of it is the one of the bytes sent, and the
 * local file is still those bytes: hashed again (beside the remote's checksum, so it costs no
 * time on a real link) and its identity unchanged since it was opened, by handle and by path.
 */
async function verifyPart(a: {
  session: RemoteSession;
  local: LocalHandle;
  file: LocalFile;
  partPath: string;
  size: number;
  sha256: string;
  identity: string;
  signal: AbortSignal | undefined;
  remoteHash: NonNullable<UploadOptions['remoteHash']>;
  /** Hash the local file again (not when its SHA-256 was known beforehand). */
  rehash: boolean;
}): Promise<{ by: string; sha256: string }> {
  const { session, file, partPath, size, sha256 } = a;
  // The size, the server's checksum and this side's again, at once (a wrong size is rare: the
  // checksums it wasted cost nothing then).
  const [remoteSize, remote, again] = await Promise.all([
    session.size(partPath),
    a.remoteHash(session, partPath, size),
    a.rehash ? hashFile(a.local, size, file.path, a.signal) : sha256,
  ]);
  if (remoteSize !== size) {
    await session.unlink(partPath).catch(() => {});
    throw new RemoteMismatchError(
      `remote copy of ${file.name} has ${remoteSize ?? 'no'} bytes, expected ${size}; the partial upload was removed`,
    );
  }
  if (remote.sum !== sha256) {
    await session.unlink(partPath).catch(() => {});
    throw new RemoteMismatchError(
      `remote copy of ${file.name} does not match: SHA-256 ${remote.sum} on the remote, ${sha256} here; the partial upload was removed`,
    );
  }
  const byHandle = identityOf(await a.local.stat({ bigint: true }));
  const byPath = await stat(file.path, { bigint: true }).then(identityOf, () => 'gone');
  if (again !== sha256 || byHandle !== a.identity || byPath !== a.identity) {
    await session.unlink(partPath).catch(() => {});
    const how = byPath === 'gone' ? 'removed' : again !== sha256 ? 'rewritten' : 'modified or replaced';
    throw new LocalChangedError(
      `${file.path} changed while being copied (${how} during the upload); the remote copy was not kept`,
      { hint: 'copy again once whatever writes it has finished' },
    );
  }
  return { by: remote.by, sha256 };
}

export async function hashFile(
  local: LocalHandle,
  size: number,
  name: string,
  signal: AbortSignal | undefined,
): Promise<string> {
  const hash = createHash('sha256');
  await hashRange(local, hash, 0, size, name, signal);
  return hash.digest('hex');
}

async function hashRange(
  local: LocalHandle,
  hash: Hash,
  from: number,
  to: number,
  name: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const buf = Buffer.allocUnsafe(READ_BYTES);
  let pos = from;
  while (pos < to) {
    if (signal?.aborted) throw new InterruptedError('interrupted');
    const { bytesRead } = await local.read(buf, 0, Math.min(buf.length, to - pos), pos);
    if (bytesRead === 0) throw shrank(name);
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

const shrank = (name: string) =>
  new LocalChangedError(`local file ${name} shrank while being copied`, {
    hint: 'copy again once whatever writes it has finished',
  });

interface SendArgs {
  session: RemoteSession;
  /** The local file's path, for messages. */
  name: string;
  local: LocalHandle;
  handle: Buffer;
  partPath: string;
  from: number;
  size: number;
  hash: Hash | null;
  limiter: RateLimiter | null;
  signal: AbortSignal | undefined;
  progress: Progress;
}

/**
 * Pipelined writes: up to IN_FLIGHT requests outstanding, each at its own offset, so the link
 * stays busy while acknowledgements travel back. The part file is therefore only guaranteed whole
 * up to the first write that did not complete: on a failure we stop issuing, wait for the writes
 * in flight, and a resume restarts from the size the server reports, which SFTP servers grow
 * only as writes land (OpenSSH's sftp-server applies requests in order).
 */
async function sendRange(a: SendArgs): Promise<number> {
  const inflight = new Set<Promise<void>>();
  let failure: unknown = null;
  let acked = a.from;
  let pos = a.from;
  const buf = () => Buffer.allocUnsafe(READ_BYTES);
  while (pos < a.size && failure === null) {
    if (a.signal?.aborted) {
      failure = new InterruptedError(`interrupted while copying ${a.partPath}`);
      break;
    }
    const block = buf();
    const { bytesRead } = await a.local.read(block, 0, Math.min(READ_BYTES, a.size - pos), pos);
    if (bytesRead === 0) {
      failure = shrank(a.name);
      break;
    }
    a.hash?.update(block.subarray(0, bytesRead));
    for (let off = 0; off < bytesRead && failure === null; off += WRITE_BYTES) {
      const len = Math.min(WRITE_BYTES, bytesRead - off);
      if (a.limiter) await a.limiter.take(len);
      while (inflight.size >= IN_FLIGHT) await Promise.race(inflight);
      if (failure !== null) break;
      const p = a.session
        .write(a.handle, block.subarray(off, off + len), pos + off, a.partPath)
        .then(
          () => {
            acked += len;
            a.progress.update(acked);
          },
          (err: unknown) => {
            failure ??= err;
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    pos += bytesRead;
  }
  await Promise.all(inflight);
  if (failure !== null) throw failure;
  return pos - a.from;
}
