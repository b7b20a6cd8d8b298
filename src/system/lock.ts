import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { BusyError } from '../errors.js';
import type { Logger } from '../log/logger.js';

export interface LockHandle {
  release(): Promise<void>;
}

/**
 * Time as the lock sees it (its deadline, a lock's age, the waits between tries): injectable, so
 * tests step through a wait without spending it. A lock directory's mtime is compared with `now`.
 */
export interface LockClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realLockClock: LockClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

export interface AcquireOptions {
  runDir: string;
  log: Logger;
  /** Default: the real clock. */
  clock?: LockClock;
  /** Wait this long for the lock before giving up (0: fail at once). */
  waitMs: number;
  /** What the lock guards, in messages: "the <title> lock", "<title> is locked by ...". Default: the name. */
  title?: string;
  /** The BusyError's message, given who holds the lock. Default: "<title> is locked by <who>". */
  busy?: (who: string) => string;
  /** The BusyError's hint. */
  hint?: string;
}

export interface LockOptions {
  runDir: string;
  log: Logger;
  /** What the holder is doing, shown to whoever finds the lock taken. */
  purpose: string;
  /** Wait this long for the lock before giving up (0: fail at once). */
  waitMs: number;
  /** Default: the real clock. */
  clock?: LockClock;
}

/** A live holder refreshes the lock directory's mtime this often. */
const UPDATE_MS = 2_000;
/** Not refreshed for this long: its holder is no longer running (with a dead owner, taken over). */
const STALE_MS = UPDATE_MS + 1_000;

function lockAgeMs(dir: string, now: number): number {
  try {
    return now - statSync(dir).mtimeMs;
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
 * A named lock in runDir (`<name>.lock`, with `<name>.lock.owner` saying who holds it and why):
 * proper-lockfile's mkdir lock, kept fresh while held. A holder that died (kill -9, a power cut of
 * a run dir that is not a tmpfs) is detected by its recorded pid and the lock taken over, but only
 * once the lock has also stopped being refreshed: a fresh lock with a dead owner record belongs to
 * a new holder that has not written its record yet. A dead owner's lock is waited on until it goes
 * stale (a few seconds) even with `waitMs` 0, so a run right after a kill -9 still gets it.
 */
export async function acquireLock(name: string, purpose: string, opts: AcquireOptions): Promise<LockHandle> {
  const title = opts.title ?? name;
  const clock = opts.clock ?? realLockClock;
  mkdirSync(opts.runDir, { recursive: true, mode: 0o755 });
  const file = path.join(opts.runDir, `${name}.lock`);
  const ownerFile = `${file}.owner`;
  writeFileSync(file, '', { flag: 'a' });
  let deadline = clock.now() + opts.waitMs;
  let graceGiven = false;
  let announced = false;
  for (;;) {
    try {
      const release = await lockfile.lock(file, {
        realpath: false,
        stale: 15_000,
        update: UPDATE_MS,
        onCompromised: (err) => opts.log.error(`${title} lock compromised: ${err.message}`),
      });
      const owner: Owner = { pid: process.pid, purpose, since: new Date(clock.now()).toISOString() };
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
      const ownerGone = !!owner && !pidAlive(owner.pid);
      if (ownerGone && lockAgeMs(`${file}.lock`, clock.now()) > STALE_MS) {
        opts.log.warn(
          `taking over the ${title} lock left by pid ${owner.pid} (${owner.purpose}), which is gone`,
        );
        rmSync(`${file}.lock`, { recursive: true, force: true });
        continue;
      }
      if (ownerGone && !graceGiven) {
        // Long enough for a lock that nobody refreshes to go stale, and no longer.
        deadline = Math.max(deadline, clock.now() + STALE_MS + 500);
        graceGiven = true;
      }
      const who = owner ? `pid ${owner.pid} (${owner.purpose}, since ${owner.since})` : 'another zshield';
      if (clock.now() >= deadline) {
        throw new BusyError(opts.busy ? opts.busy(who) : `${title} is locked by ${who}`, {
          ...(opts.hint ? { hint: opts.hint } : {}),
        });
      }
      if (!announced) {
        opts.log.info(
          ownerGone
            ? `waiting for the ${title} lock left by pid ${owner.pid}, which is gone, to go stale`
            : `waiting for the ${title} lock held by ${who}`,
        );
        announced = true;
      }
      await clock.sleep(Math.min(1000, Math.max(50, deadline - clock.now())));
    }
  }
}

/**
 * The one lock held by every command that changes LVM, so the daemon and a manual backup never
 * rotate at the same time.
 */
export function acquireLvmLock(opts: LockOptions): Promise<LockHandle> {
  return acquireLock('lvm', opts.purpose, {
    runDir: opts.runDir,
    log: opts.log,
    waitMs: opts.waitMs,
    ...(opts.clock ? { clock: opts.clock } : {}),
    title: 'LVM',
    // Who waited already needs no advice to wait: a longer wait or a later run is what is left.
    hint:
      opts.waitMs > 0
        ? `still held after waiting ${opts.waitMs / 1000} s: wait for it to finish and run this again`
        : 'wait for it to finish, or pass --wait SECONDS to queue behind it',
  });
}

function readOwner(file: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    // An owner file of an earlier remote lock held the bare pid.
    if (typeof o === 'number')
      return Number.isInteger(o) && o > 0 ? { pid: o, purpose: 'unknown', since: 'unknown' } : null;
    return typeof (o as Owner)?.pid === 'number' ? (o as Owner) : null;
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
