import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path/posix';
import { InterruptedError, VerifyError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type LocalFile, PART_SUFFIX } from './backups.js';
import { quoteForShell, type RemoteSession } from './ssh.js';

/**
 * One file to the remote: written under `<name>.zshield-part`, continued from the part's size when
 * an earlier try was cut off, checked (size and SHA-256 computed by the remote) and only then
 * renamed to its name. So a remote file with a backup's name is always whole and verified, and a
 * copy stopped at any point costs only the bytes in flight.
 */

/**
 * Bytes per SFTP write request: just under OpenSSH's 256 KiB packet limit (ssh2 splits a request
 * larger than the server's limit, for other servers). Measured on loopback: 248 KiB requests move
 * about a quarter faster than 64 KiB ones, ssh2's per-packet work being the bottleneck.
 */
const WRITE_BYTES = 248 * 1024;
/** Write requests in flight: enough to fill a long fat link without acknowledgements stalling it. */
const IN_FLIGHT = 32;
/** Local read size: whole write requests. */
const READ_BYTES = 4 * WRITE_BYTES;

/** A token bucket: `take(n)` resolves when n more bytes fit in the rate. */
export class RateLimiter {
  private next = Number.NEGATIVE_INFINITY;
  constructor(
    private readonly bytesPerSecond: number,
    private readonly now: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  async take(n: number): Promise<void> {
    const t = this.now();
    // Allow a burst of 1/4 s so small writes do not each wait.
    const burstMs = 250;
    this.next = Math.max(this.next, t - burstMs) + (n / this.bytesPerSecond) * 1000;
    const wait = this.next - t;
    if (wait > 0) await this.sleep(wait);
  }
}

/** Plain progress lines for the log and the terminal: every 10 %, at most one per 2 s, and at the end. */
export class Progress {
  private lastPct = -1;
  private lastAt = 0;
  private readonly started: number;
  constructor(
    private readonly log: Logger,
    private readonly name: string,
    private readonly total: number,
    private readonly from: number,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.started = now();
    this.lastPct = total === 0 ? -1 : Math.floor((from / total) * 100);
  }

  update(done: number): void {
    const pct = this.total === 0 ? 100 : Math.floor((done / this.total) * 100);
    const t = this.now();
    const step = Math.floor(pct / 10);
    if (pct < 100 && (step <= Math.floor(this.lastPct / 10) || t - this.lastAt < 2000)) return;
    if (pct === 100 && this.lastPct === 100) return;
    this.lastPct = pct;
    this.lastAt = t;
    const secs = Math.max((t - this.started) / 1000, 0.001);
    const rate = (done - this.from) / secs;
    this.log.info(
      `remote copy: ${this.name} ${pct}% (${formatBytes(done)} of ${formatBytes(this.total)}, ${formatBytes(rate)}/s)`,
    );
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** The remote's copy is not the local file: the part is removed and the upload starts over. */
export class RemoteMismatchError extends VerifyError {}

export interface UploadOptions {
  session: RemoteSession;
  file: LocalFile;
  destination: string;
  log: Logger;
  limiter: RateLimiter | null;
  signal?: AbortSignal;
}

export interface UploadResult {
  /** Where the upload started (0: from scratch). */
  resumedFrom: number;
  /** Bytes sent in this try. */
  sent: number;
  sha256: string;
  /** How the checksum was taken on the remote. */
  verifiedBy: string;
}

export async function uploadFile(opts: UploadOptions): Promise<UploadResult> {
  const { session, file, destination, log, limiter, signal } = opts;
  const finalPath = path.join(destination, file.name);
  const partPath = finalPath + PART_SUFFIX;
  const local = await open(file.path, 'r');
  try {
    const size = (await local.stat()).size;
    if (size !== file.size) {
      throw new VerifyError(`${file.path} changed size while being copied (${file.size} -> ${size} bytes)`, {
        hint: 'copy again once whatever writes it has finished',
      });
    }
    let resumedFrom = (await session.size(partPath)) ?? 0;
    if (resumedFrom > size) {
      log.warn(`remote copy: ${partPath} is larger than ${file.path}; starting over`);
      resumedFrom = 0;
    }
    const hash = createHash('sha256');
    // The checksum covers the whole file: the part already sent is hashed from the local copy (the
    // remote's own checksum at the end catches a part that does not match it).
    if (resumedFrom > 0) {
      log.info(`remote copy: resuming ${file.name} at ${formatBytes(resumedFrom)} of ${formatBytes(size)}`);
      await hashRange(local, hash, 0, resumedFrom, signal);
    }
    const handle = await session.open(partPath, resumedFrom > 0 ? 'r+' : 'w');
    const progress = new Progress(log, file.name, size, resumedFrom);
    let sent = 0;
    try {
      sent = await sendRange({
        session,
        local,
        handle,
        partPath,
        from: resumedFrom,
        size,
        hash,
        limiter,
        signal,
        progress,
      });
      await session.fsync(handle, partPath);
    } finally {
      await session.closeHandle(handle, partPath).catch(() => {});
    }
    const sha256 = hash.digest('hex');
    const remoteSize = await session.size(partPath);
    if (remoteSize !== size) {
      await session.unlink(partPath).catch(() => {});
      throw new RemoteMismatchError(
        `remote copy of ${file.name} has ${remoteSize ?? 'no'} bytes, expected ${size}; the partial upload was removed`,
      );
    }
    const remote = await remoteSha256(session, partPath, size, signal);
    if (remote.sum !== sha256) {
      await session.unlink(partPath).catch(() => {});
      throw new RemoteMismatchError(
        `remote copy of ${file.name} does not match: SHA-256 ${remote.sum} on the remote, ${sha256} here; the partial upload was removed`,
      );
    }
    await session.rename(partPath, finalPath);
    progress.update(size);
    return { resumedFrom, sent, sha256, verifiedBy: remote.by };
  } finally {
    await local.close();
  }
}

async function hashRange(
  local: Awaited<ReturnType<typeof open>>,
  hash: Hash,
  from: number,
  to: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const buf = Buffer.allocUnsafe(READ_BYTES);
  let pos = from;
  while (pos < to) {
    if (signal?.aborted) throw new InterruptedError('interrupted');
    const { bytesRead } = await local.read(buf, 0, Math.min(buf.length, to - pos), pos);
    if (bytesRead === 0) throw new VerifyError('local file shrank while being copied');
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

interface SendArgs {
  session: RemoteSession;
  local: Awaited<ReturnType<typeof open>>;
  handle: Buffer;
  partPath: string;
  from: number;
  size: number;
  hash: Hash;
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
      failure = new VerifyError('local file shrank while being copied');
      break;
    }
    a.hash.update(block.subarray(0, bytesRead));
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

/**
 * The SHA-256 of a remote file, computed where it is so the bytes are not sent back: first with
 * `openssl dgst` (OpenSSL uses the CPU's SHA instructions; coreutils' sha256sum on Debian 12 does
 * not and is 3-4 times slower, which for a 1 GiB image is most of the verification time), then
 * with `sha256sum`. Accounts limited to SFTP (internal-sftp, no shell) or servers with neither get
 * the slow path: read it back over SFTP and hash it here.
 */
export async function remoteSha256(
  session: RemoteSession,
  file: string,
  size: number,
  signal: AbortSignal | undefined,
): Promise<{ sum: string; by: string }> {
  for (const [tool, command] of [
    ['openssl', `openssl dgst -sha256 -r ${quoteForShell(file)}`],
    ['sha256sum', `sha256sum -- ${quoteForShell(file)}`],
  ] as const) {
    try {
      const r = await session.exec(command);
      const m = /^\\?([0-9a-f]{64})\s/.exec(r.stdout);
      if (r.code === 0 && m) return { sum: m[1]!, by: tool };
    } catch (err) {
      // A refused exec (an SFTP-only account) falls through to the read-back; a lost link does not.
      if (session.lost) throw err;
      break;
    }
  }
  const hash = createHash('sha256');
  const handle = await session.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(WRITE_BYTES);
    let pos = 0;
    while (pos < size) {
      if (signal?.aborted) throw new InterruptedError('interrupted');
      const n = await session.read(handle, buf, pos, file);
      if (n <= 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    await session.closeHandle(handle, file).catch(() => {});
  }
  return { sum: hash.digest('hex'), by: 'read-back' };
}
