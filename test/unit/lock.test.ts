import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BusyError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import { acquireLvmLock, type LockHandle, pidAlive } from '../../src/system/lock.js';
import { tempDir } from './helpers/context.js';

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const pid = spawnSync('true').pid;
  expect(pidAlive(pid)).toBe(false);
  return pid;
}

describe('acquireLvmLock', () => {
  let dir: string;
  let cleanup: () => void;
  const held: LockHandle[] = [];
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    for (const h of held.splice(0)) await h.release();
    cleanup();
  });

  const acquire = async (purpose: string, waitMs = 0, log = memoryLogger()) => {
    const h = await acquireLvmLock({ runDir: path.join(dir, 'run'), log, purpose, waitMs });
    held.push(h);
    return h;
  };

  it('records the holder; a second one with waitMs 0 is BusyError naming the holder', async () => {
    await acquire('backup (daily)');
    const owner = JSON.parse(readFileSync(path.join(dir, 'run', 'lvm.lock.owner'), 'utf8'));
    expect(owner).toMatchObject({ pid: process.pid, purpose: 'backup (daily)' });
    const started = Date.now();
    const err = await acquire('backup (manual)').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusyError);
    expect((err as BusyError).message).toMatch(
      new RegExp(`^LVM is locked by pid ${process.pid} \\(backup \\(daily\\), since `),
    );
    expect((err as BusyError).hint).toMatch(/--wait/);
    expect((err as BusyError).exitCode).toBe(7);
    expect(Date.now() - started).toBeLessThan(1000);
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
    const started = Date.now();
    setTimeout(() => void first.release(), 300);
    await acquire('second', 5000, log);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(
      log.lines.some((l) => l.startsWith(`info: waiting for the LVM lock held by pid ${process.pid} (first`)),
    ).toBe(true);
    const owner = JSON.parse(readFileSync(path.join(dir, 'run', 'lvm.lock.owner'), 'utf8'));
    expect(owner.purpose).toBe('second');
  });

  it('with waitMs, gives up with BusyError when the holder keeps it', async () => {
    await acquire('holder');
    const started = Date.now();
    await expect(acquire('waiter', 400)).rejects.toBeInstanceOf(BusyError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  });

  /** Leave a lock as a holder killed with SIGKILL would: the lock dir, no refresh since, an owner record. */
  function leaveLock(pid: number, ageSeconds: number): void {
    const run = path.join(dir, 'run');
    mkdirSync(path.join(run, 'lvm.lock.lock'), { recursive: true });
    writeFileSync(path.join(run, 'lvm.lock'), '');
    writeFileSync(
      path.join(run, 'lvm.lock.owner'),
      JSON.stringify({ pid, purpose: 'backup (daily)', since: '2026-11-21T03:00:00.000Z' }),
    );
    const t = new Date(Date.now() - ageSeconds * 1000);
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

  it('does not take over a fresh lock even if its owner record names a dead pid', async () => {
    leaveLock(deadPid(), 0);
    await expect(acquire('backup (manual)')).rejects.toBeInstanceOf(BusyError);
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
