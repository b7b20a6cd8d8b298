import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BusyError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import {
  acquireLock,
  acquireLvmLock,
  type LockClock,
  type LockHandle,
  pidAlive,
} from '../../src/system/lock.js';
import { tempDir } from './helpers/context.js';

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const pid = spawnSync('true').pid;
  expect(pidAlive(pid)).toBe(false);
  return pid;
}

/**
 * The lock's time, stepped by hand: `sleep` moves it on at once (and runs `onSleep`, a stand-in for
 * whatever happens in the world meanwhile), so a test asserts the time the lock waited, not the
 * wall clock's. It starts at the real time, so lock directories' mtimes compare with it.
 */
class SteppedClock implements LockClock {
  t = Date.now();
  readonly started = this.t;
  onSleep: (now: number) => void | Promise<void> = () => {};
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.t += ms;
    await this.onSleep(this.t);
  }
  get waited(): number {
    return this.t - this.started;
  }
}

// Every test gets a fresh run dir; the locks it took are released after it.
let dir: string;
let cleanup: () => void;
const held: LockHandle[] = [];
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(async () => {
  for (const h of held.splice(0)) await h.release();
  cleanup();
});

describe('acquireLvmLock', () => {
  const acquire = async (purpose: string, waitMs = 0, log = memoryLogger(), clock?: LockClock) => {
    const h = await acquireLvmLock({
      runDir: path.join(dir, 'run'),
      log,
      purpose,
      waitMs,
      ...(clock ? { clock } : {}),
    });
    held.push(h);
    return h;
  };

  it('records the holder; a second one with waitMs 0 is BusyError naming the holder', async () => {
    await acquire('backup (daily)');
    const owner = JSON.parse(readFileSync(path.join(dir, 'run', 'lvm.lock.owner'), 'utf8'));
    expect(owner).toMatchObject({ pid: process.pid, purpose: 'backup (daily)' });
    const err = await acquire('backup (manual)').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect((err as BusyError).message).toMatch(
      new RegExp(`^LVM is locked by pid ${process.pid} \\(backup \\(daily\\), since `),
    );
    expect((err as BusyError).hint).toMatch(/--wait/);
    expect((err as BusyError).exitCode).toBe(7);
  });

  it('release frees it and removes the owner record', async () => {
    const h = await acquire('first');
    await h.release();
    held.length = 0;
    expect(existsSync(path.join(dir, 'run', 'lvm.lock.owner'))).toBe(false);
    await expect(acquire('second')).resolves.toBeDefined();
  });

  it('with waitMs, queues behind the holder and gets the lock once it is released', async () => {
    const first = await acquire('first');
    const log = memoryLogger();
    const clock = new SteppedClock();
    clock.onSleep = () => first.release();
    await acquire('second', 5000, log, clock);
    // One wait (the first, 1 s), then the lock was free.
    expect(clock.waited).toBe(1000);
    expect(
      log.lines.some((l) => l.startsWith(`info: waiting for the LVM lock held by pid ${process.pid} (first`)),
    ).toBe(true);
    const owner = JSON.parse(readFileSync(path.join(dir, 'run', 'lvm.lock.owner'), 'utf8'));
    expect(owner.purpose).toBe('second');
  });

  it('with waitMs, gives up with BusyError when the holder keeps it', async () => {
    await acquire('holder');
    const clock = new SteppedClock();
    await expect(acquire('waiter', 400, memoryLogger(), clock)).rejects.toBeInstanceOf(BusyError);
    expect(clock.waited).toBe(400);
  });

  /** Leave a lock as a holder killed with SIGKILL would: the lock dir, no refresh since, an owner record. */
  function leaveLock(pid: number, ageSeconds: number, now = Date.now()): void {
    const run = path.join(dir, 'run');
    mkdirSync(path.join(run, 'lvm.lock.lock'), { recursive: true });
    writeFileSync(path.join(run, 'lvm.lock'), '');
    writeFileSync(
      path.join(run, 'lvm.lock.owner'),
      JSON.stringify({ pid, purpose: 'backup (daily)', since: '2026-11-21T03:00:00.000Z' }),
    );
    const t = new Date(now - ageSeconds * 1000);
    utimesSync(path.join(run, 'lvm.lock.lock'), t, t);
  }

  it('takes over a lock left by a holder that died (not refreshed, pid gone)', async () => {
    const pid = deadPid();
    // 5 s: older than the refresh interval, younger than proper-lockfile's own 15 s staleness.
    leaveLock(pid, 5);
    const log = memoryLogger();
    await acquire('backup (manual)', 0, log);
    expect(log.lines).toContain(
      `warn: taking over the LVM lock left by pid ${pid} (backup (daily)), which is gone`,
    );
    const owner = JSON.parse(readFileSync(path.join(dir, 'run', 'lvm.lock.owner'), 'utf8'));
    expect(owner.pid).toBe(process.pid);
  });

  it('a dead owner of a lock killed a moment ago: waits for it to go stale, then takes it over', async () => {
    const pid = deadPid();
    // Killed 1.5 s ago: the last refresh is too recent to call it stale yet.
    const clock = new SteppedClock();
    leaveLock(pid, 1.5, clock.now());
    const log = memoryLogger();
    await acquire('backup (manual)', 0, log, clock);
    // Stale once not refreshed for more than 3 s: 1.5 s old, so two 1 s waits.
    expect(clock.waited).toBe(2000);
    expect(log.lines).toContain(
      `info: waiting for the LVM lock left by pid ${pid}, which is gone, to go stale`,
    );
    expect(log.lines).toContain(
      `warn: taking over the LVM lock left by pid ${pid} (backup (daily)), which is gone`,
    );
  });

  it('does not take over a lock still being refreshed, even if its owner record names a dead pid', async () => {
    // A new holder between taking the lock and writing its record: it refreshes the lock during
    // every wait (as proper-lockfile's update timer does), the record names a dead pid.
    const clock = new SteppedClock();
    leaveLock(deadPid(), 0, clock.now());
    const lockDir = path.join(dir, 'run', 'lvm.lock.lock');
    clock.onSleep = (now) => utimesSync(lockDir, new Date(now), new Date(now));
    await expect(acquire('backup (manual)', 0, memoryLogger(), clock)).rejects.toBeInstanceOf(BusyError);
    // It gave the lock the time a dead holder's would need to go stale (3 s, and 0.5 s), no more.
    expect(clock.waited).toBe(3500);
  });

  it('does not take over a lock whose holder is alive, however old', async () => {
    leaveLock(process.pid, 8);
    const err = await acquire('backup (manual)').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect((err as Error).message).toContain(
      `pid ${process.pid} (backup (daily), since 2026-11-21T03:00:00.000Z)`,
    );
  });

  it('a lock dir without an owner record is "another zshield"', async () => {
    mkdirSync(path.join(dir, 'run', 'lvm.lock.lock'), { recursive: true });
    await expect(acquire('x')).rejects.toThrow('LVM is locked by another zshield');
  });
});

describe('acquireLock (any named lock)', () => {
  const remote = async (purpose: string, log = memoryLogger(), clock?: LockClock) => {
    const h = await acquireLock('remote', purpose, {
      runDir: path.join(dir, 'run'),
      log,
      ...(clock ? { clock } : {}),
      waitMs: 0,
      title: 'remote copy',
      busy: (who) => `another remote copy is running: ${who}`,
      hint: 'wait for it to finish',
    });
    held.push(h);
    return h;
  };

  it('is its own lock file with its own owner record; the LVM lock is independent of it', async () => {
    await remote('remote copy to a@b:/x');
    expect(JSON.parse(readFileSync(path.join(dir, 'run', 'remote.lock.owner'), 'utf8'))).toMatchObject({
      pid: process.pid,
      purpose: 'remote copy to a@b:/x',
    });
    const lvm = await acquireLvmLock({
      runDir: path.join(dir, 'run'),
      log: memoryLogger(),
      purpose: 'b',
      waitMs: 0,
    });
    held.push(lvm);
    const err = await remote('second').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect((err as BusyError).message).toMatch(
      new RegExp(`^another remote copy is running: pid ${process.pid} \\(remote copy to a@b:/x, since `),
    );
    expect((err as BusyError).hint).toBe('wait for it to finish');
  });

  /** The lock of a remote copy killed with SIGKILL `ageSeconds` after its last refresh. */
  function leaveRemote(owner: string, ageSeconds: number): void {
    const run = path.join(dir, 'run');
    mkdirSync(path.join(run, 'remote.lock.lock'), { recursive: true });
    writeFileSync(path.join(run, 'remote.lock'), '');
    writeFileSync(path.join(run, 'remote.lock.owner'), owner);
    const t = new Date(Date.now() - ageSeconds * 1000);
    utimesSync(path.join(run, 'remote.lock.lock'), t, t);
  }

  it('takes over a dead remote copy only once its lock is stale (the twin took it at once)', async () => {
    const pid = deadPid();
    leaveRemote(JSON.stringify({ pid, purpose: 'remote copy to a@b:/x', since: 'x' }), 5);
    const log = memoryLogger();
    const clock = new SteppedClock();
    await remote('next', log, clock);
    expect(clock.waited).toBe(0);
    expect(log.lines).toContain(
      `warn: taking over the remote copy lock left by pid ${pid} (remote copy to a@b:/x), which is gone`,
    );
  });

  it('an owner record of the earlier remote lock (a bare pid) is still understood', async () => {
    const pid = deadPid();
    leaveRemote(String(pid), 5);
    const log = memoryLogger();
    await remote('next', log);
    expect(log.lines).toContain(
      `warn: taking over the remote copy lock left by pid ${pid} (unknown), which is gone`,
    );
    const err = await remote('third').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(`pid ${process.pid} (next, since `);
  });
});
