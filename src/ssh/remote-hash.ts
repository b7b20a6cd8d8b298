// The SHA-256 of a file on the server, so an upload is proven without trusting the link: computed
// there in one exec per batch where the account has a shell, else read back over SFTP and hashed
// here (never skipped).
import { createHash } from 'node:crypto';
import { InterruptedError } from '../errors.js';
import { quoteForShell, type RemoteSession, WRITE_BYTES } from './session.js';

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
  /** What the server is known to allow: `shell: false` goes straight to the read-back. */
  known: { shell: boolean | null } = { shell: null },
): Promise<{ sum: string; by: string }> {
  if (known.shell !== false) {
    const many = await remoteSha256Many(session, [file]);
    if (many === 'no-shell') known.shell = false;
    else if (many !== null) {
      known.shell = true;
      return { sum: many.sums[0]!, by: many.by };
    }
  }
  return { sum: await readBackSha256(session, file, size, signal), by: 'read-back' };
}

/**
 * The SHA-256 of several remote files in one exec (one round trip, one process): openssl, else
 * sha256sum, each printing one line per file in the order given. 'no-shell' when the server runs
 * no command (an SFTP-only account: the exec is refused, or answered by internal-sftp with
 * nothing at all); null when neither tool answered for every file (one missing, say); a lost link
 * throws.
 */
export async function remoteSha256Many(
  session: RemoteSession,
  files: readonly string[],
): Promise<{ sums: string[]; by: string } | 'no-shell' | null> {
  const quoted = files.map(quoteForShell).join(' ');
  let said = false;
  for (const [tool, command] of [
    ['openssl', `openssl dgst -sha256 -r ${quoted}`],
    ['sha256sum', `sha256sum -- ${quoted}`],
  ] as const) {
    try {
      const r = await session.exec(command);
      const lines = r.stdout.split('\n').filter((l) => l !== '');
      const sums = lines.map((l) => /^\\?([0-9a-f]{64})\s/.exec(l)?.[1]);
      if (r.code === 0 && sums.length === files.length && sums.every((x) => x !== undefined))
        return { sums: sums as string[], by: tool };
      said ||= r.stdout.trim() !== '' || r.stderr.trim() !== '';
    } catch (err) {
      // A refused exec (an SFTP-only account) falls through to the read-back; a lost link does not.
      if (session.lost) throw err;
      return 'no-shell';
    }
  }
  return said ? null : 'no-shell';
}

/** Read requests in flight during a read-back (as for the writes: acknowledgements overlap). */
const READ_IN_FLIGHT = 16;

/**
 * The slow path: read the file back over SFTP and hash it here, READ_IN_FLIGHT requests at a time,
 * hashed in order. A short read (the server's limit under WRITE_BYTES) drops the reads after it and
 * goes on from where it ended.
 */
async function readBackSha256(
  session: RemoteSession,
  file: string,
  size: number,
  signal: AbortSignal | undefined,
): Promise<string> {
  const hash = createHash('sha256');
  const handle = await session.open(file, 'r');
  try {
    let pos = 0;
    let next = 0;
    const queue: { at: number; buf: Buffer; n: Promise<number> }[] = [];
    const issue = () => {
      while (queue.length < READ_IN_FLIGHT && next < size) {
        const buf = Buffer.allocUnsafe(Math.min(WRITE_BYTES, size - next));
        const n = session.read(handle, buf, next, file);
        // A rejection is read when its turn comes; none goes unhandled meanwhile.
        n.catch(() => {});
        queue.push({ at: next, buf, n });
        next += buf.length;
      }
    };
    issue();
    while (pos < size) {
      if (signal?.aborted) throw new InterruptedError('interrupted');
      const head = queue.shift();
      if (!head) break;
      const n = await head.n;
      if (n <= 0) break;
      hash.update(head.buf.subarray(0, n));
      pos += n;
      if (n < head.buf.length) {
        // The rest of this request was not sent: what is in flight starts too far on.
        await Promise.allSettled(queue.map((q) => q.n));
        queue.length = 0;
        next = pos;
      }
      issue();
    }
    await Promise.allSettled(queue.map((q) => q.n));
  } finally {
    await session.closeHandle(handle, file).catch(() => {});
  }
  return hash.digest('hex');
}
