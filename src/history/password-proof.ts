import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { writePrivateFileAtomic } from '../system/atomic-file.js';

/**
 * Replication copies the repository's files as they are and needs none of its keys, yet a wrong
 * password is a config error before anything moves (exit 3). Proving it is restic's key derivation
 * (scrypt: 0.4 s of CPU and 50 MiB on this project's hosts, on every box at every run), so a proof
 * is remembered: a salted SHA-256 of the password and of the repository's key files (name, size,
 * modification time), in a file of its own beside the repository, 0600 like the config that holds
 * the password. Another password, or a key added, changed or removed, and restic proves it again.
 */
export const proofFile = (dir: string) => path.join(dir, 'password-proof');

/** What restic would open: the repository's key files. Null when they cannot be read. */
function keysOf(repo: string): string | null {
  const keys = path.join(repo, 'keys');
  try {
    return readdirSync(keys)
      .sort()
      .map((n) => {
        const st = statSync(path.join(keys, n));
        return `${n} ${st.size} ${st.mtimeMs}`;
      })
      .join('\n');
  } catch {
    return null;
  }
}

const digest = (salt: Buffer, password: string, keys: string) =>
  createHash('sha256').update(salt).update('\0').update(password).update('\0').update(keys).digest();

function provenBefore(dir: string, password: string, keys: string): boolean {
  try {
    const [salt, sum] = readFileSync(proofFile(dir), 'utf8').trim().split(' ');
    const want = Buffer.from(sum ?? '', 'hex');
    const got = digest(Buffer.from(salt ?? '', 'hex'), password, keys);
    return want.length === got.length && timingSafeEqual(want, got);
  } catch {
    return false;
  }
}

/**
 * `open` proves the password (restic cat config); it runs unless this password opened these keys
 * before. A dry run proves too, and remembers nothing.
 */
export async function provePassword(
  ctx: Context,
  where: { dir: string; repo: string; password: string },
  open: () => Promise<void>,
): Promise<void> {
  const keys = keysOf(where.repo);
  if (keys !== null && provenBefore(where.dir, where.password, keys)) {
    ctx.log.debug('history: repository password proven before (same password, same keys)');
    return;
  }
  await open();
  if (keys === null || ctx.dryRun) return;
  const salt = randomBytes(16);
  writePrivateFileAtomic(
    ctx.writes,
    proofFile(where.dir),
    `${salt.toString('hex')} ${digest(salt, where.password, keys).toString('hex')}\n`,
  );
}
