import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { BusyError } from '../errors.js';
import type { Logger } from '../log/logger.js';

export interface LockHandle {
  release(): Promise<void>;
}

export interface LockOptions {
  runDir: string;
  log: Logger;
  /** What the holder is doing, shown to whoever finds the lock taken. */
  purpose: string;
  /** Wait this long for the lock before giving up (0: fail at once). */
  waitMs: number;
}

const UPDATE_MS = 2_000;

function lockAgeMs(dir: string): number {
  try {
    return Date.now() - statSync(dir).mtimeMs;
  } catch {
    return 0;
  }
}

interface Owner {
  pid: number;
  purpose: string;
  since: string;
}

/**
 * The one lock held by every command that changes LVM, so the daemon and a manual backup never
 * rotate at the same time. proper-lockfile's mkdir lock, kept fresh while held; a holder that died
 * (kill -9, power cut of a tmpfs-less run dir) is detected by its pid and the lock taken over.
 */
export async function acquireLvmLock(opts: LockOptions): Promise<LockHandle> {
  mkdirSync(opts.runDir, { recursive: true, mode: 0o755 });
  const file = path.join(opts.runDir, 'lvm.lock');
  const ownerFile = `${file}.owner`;
  writeFileSync(file, '', { flag: 'a' });
  const deadline = Date.now() + opts.waitMs;
  let announced = false;
  for (;;) {
    try {
      const release = await lockfile.lock(file, {
        realpath: false,
        stale: 15_000,
        update: UPDATE_MS,
        onCompromised: (err) => opts.log.error(`LVM lock compromised: ${err.message}`),
      });
      const owner: Owner = { pid: process.pid, purpose: opts.purpose, since: new Date().toISOString() };
      writeFileSync(ownerFile, JSON.stringify(owner), { mode: 0o644 });
      return {
        release: async () => {
          rmSync(ownerFile, { force: true });
          await release().catch(() => {});
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
      const owner = readOwner(ownerFile);
      // A live holder refreshes the lock directory's mtime every UPDATE_MS. Only a lock that has
      // stopped being refreshed and whose recorded owner is gone is taken over: a fresh lock with an
      // old owner record belongs to a new holder that has not written its record yet.
      if (owner && !pidAlive(owner.pid) && lockAgeMs(`${file}.lock`) > UPDATE_MS + 1000) {
        opts.log.warn(`taking over the LVM lock left by pid ${owner.pid} (${owner.purpose}), which is gone`);
        rmSync(`${file}.lock`, { recursive: true, force: true });
        continue;
      }
      const who = owner ? `pid ${owner.pid} (${owner.purpose}, since ${owner.since})` : 'another zshield';
      if (Date.now() >= deadline) {
        throw new BusyError(`LVM is locked by ${who}`, {
          hint: 'wait for it to finish, or pass --wait SECONDS to queue behind it',
        });
      }
      if (!announced) {
        opts.log.info(`waiting for the LVM lock held by ${who}`);
        announced = true;
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(50, deadline - Date.now()))));
    }
  }
}

function readOwner(file: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as Owner;
    return typeof o.pid === 'number' ? o : null;
  } catch {
    return null;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
