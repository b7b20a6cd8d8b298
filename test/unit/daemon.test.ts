import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import { runDaemon } from '../../src/daemon/daemon.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, type TestContext, tempDir, testContext, waitFor } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { epoch, GiB, type LvRow } from './helpers/lvm-json.js';

// Local-time moments: the schedule is in local time, so these read the same in any zone.
const d = (day: number, h: number, m = 0, s = 0) => new Date(2026, 10, day, h, m, s);
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB, major: 253, minor: 200 };
const snapTakenAt = (t: Date, over: Partial<LvRow> = {}): LvRow => ({
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '20.00',
  tags: ['zshield_reason=daily', `zshield_time=${epoch(t)}`],
  minor: 201,
  ...over,
});

describe('runDaemon (fake clock, recording runner, 1 s ticks)', () => {
  let dir: string;
  let cleanup: () => void;
  let daemon: Promise<void> | null = null;
  const baseline = { term: 0, hup: 0 };

  beforeEach(() => {
    ({ dir, cleanup } = tempDir());
    baseline.term = process.listenerCount('SIGTERM');
    baseline.hup = process.listenerCount('SIGHUP');
  });
  afterEach(async () => {
    if (daemon) {
      process.emit('SIGTERM', 'SIGTERM');
      await daemon;
      daemon = null;
    }
    expect(process.listenerCount('SIGTERM')).toBe(baseline.term);
    expect(process.listenerCount('SIGHUP')).toBe(baseline.hup);
    cleanup();
  });

  function start(opts: {
    now: Date;
    lvs: LvRow[];
    edit?: (c: Config) => void;
    reload?: () => Promise<Config>;
  }) {
    const clock = new FakeClock(opts.now);
    const lvm = new FakeLvm({ lvs: opts.lvs });
    const runner = lvm.install(new RecordingRunner());
    const ctx = testContext({
      runner,
      dir,
      clock,
      edit: (c) => {
        c.daemon.checkEverySeconds = 1;
        opts.edit?.(c);
      },
    });
    daemon = runDaemon(ctx, { reloadConfig: opts.reload ?? (async () => ctx.config) });
    const count = (tool: string) => runner.calls.filter((c) => c.argv[0] === tool).length;
    /** Probes so far: one by the start-up repair check, one per tick, two per backup. */
    const probes = () => count('vgs');
    const info = () => JSON.parse(readFileSync(path.join(dir, 'run', 'daemon.json'), 'utf8'));
    return { clock, lvm, runner, ctx, count, probes, info };
  }

  async function stop(ctx: TestContext): Promise<void> {
    process.emit('SIGTERM', 'SIGTERM');
    await daemon;
    daemon = null;
    expect(ctx.log.lines).toContain('info: daemon: stop requested');
    expect(ctx.log.lines.at(-1)).toBe('info: daemon stopped');
  }

  it('SIGTERM wakes a daemon asleep between ticks (an hour apart): it stops without waiting out the sleep', async () => {
    // Were the sleep not woken, the daemon would run for an hour and the test's timeout would end
    // it: the outcome does not depend on how fast the machine is.
    const t = start({
      now: d(1, 12),
      lvs: [ROOT, snapTakenAt(d(1, 3, 0, 5))],
      edit: (c) => {
        c.daemon.checkEverySeconds = 3600;
      },
    });
    await waitFor(() => t.probes() >= 2, 'the first tick');
    await stop(t.ctx);
  });

  it('catch-up on, snap0 from yesterday: backs up (reason daily) at start, and only once', async () => {
    const t = start({ now: d(21, 10), lvs: [ROOT, snapTakenAt(d(20, 3, 0, 5))] });
    await waitFor(() => t.count('lvcreate') === 1, 'the daily backup');
    const after = t.probes();
    await waitFor(() => t.probes() >= after + 2, 'two more ticks');
    expect(t.count('lvcreate')).toBe(1);
    const create = t.runner.calls.find((c) => c.argv[0] === 'lvcreate')!.argv;
    expect(create).toContain('zshield_reason=daily');
    expect(create).toContain(`zshield_time=${epoch(d(21, 10))}`);
    expect(t.ctx.log.lines.filter((l) => l === 'info: daemon: daily backup due')).toHaveLength(1);
    expect(JSON.parse(readFileSync(path.join(dir, 'state', 'last-backup.json'), 'utf8'))).toMatchObject({
      result: 'ok',
      reason: 'daily',
    });
    expect(t.info()).toMatchObject({ pid: process.pid, nextRun: d(22, 3).toISOString() });
    await stop(t.ctx);
    expect(existsSync(path.join(dir, 'run', 'daemon.json'))).toBe(false);
  });

  it('takes the daily backup when the clock reaches dailyAt while it runs (catch-up off)', async () => {
    const t = start({
      now: d(21, 2, 59, 50),
      lvs: [ROOT, snapTakenAt(d(20, 3, 0, 5))],
      edit: (c) => {
        c.daemon.catchUp = false;
      },
    });
    await waitFor(() => t.probes() >= 2, 'the first tick');
    expect(t.count('lvcreate')).toBe(0);
    await waitFor(() => t.info().nextRun !== null, 'daemon.json with the next run');
    expect(t.info().nextRun).toBe(d(21, 3).toISOString());

    t.clock.set(d(21, 3, 0, 10));
    await waitFor(() => t.count('lvcreate') === 1, 'the 03:00 backup');
    const after = t.probes();
    await waitFor(() => t.probes() >= after + 1, 'one more tick');
    expect(t.count('lvcreate')).toBe(1);
    expect(t.runner.calls.find((c) => c.argv[0] === 'lvcreate')!.argv).toContain(
      `zshield_time=${epoch(d(21, 3, 0, 10))}`,
    );
    await stop(t.ctx);
  });

  it('catch-up off, snap0 from yesterday, started after 03:00: no backup until tomorrow', async () => {
    const t = start({
      now: d(21, 10),
      lvs: [ROOT, snapTakenAt(d(20, 3, 0, 5))],
      edit: (c) => {
        c.daemon.catchUp = false;
      },
    });
    await waitFor(() => t.probes() >= 3, 'two ticks');
    expect(t.count('lvcreate')).toBe(0);
    expect(t.runner.calls.every((c) => !c.mutates)).toBe(true);
    expect(t.info().nextRun).toBe(d(22, 3).toISOString());
    await stop(t.ctx);
  });

  it('no backup while a merge into lv-root is pending; says why', async () => {
    const t = start({
      now: d(21, 10),
      lvs: [{ ...ROOT, attr: 'Owi-a-s---' }, snapTakenAt(d(19, 3), { attr: 'Swi-a-s---' })],
    });
    await waitFor(() => t.probes() >= 3, 'two ticks');
    expect(t.runner.calls.every((c) => !c.mutates)).toBe(true);
    expect(t.ctx.log.lines).toContain(
      'warn: daemon: daily backup skipped: a merge (restore) is pending; it finishes at the next activation',
    );
    expect(t.ctx.log.lines).toContain(
      'warn: health: vgroup/snap0 is being merged into lv-root (a restore is pending)',
    );
    await stop(t.ctx);
  });

  it('logs the snapshot filling up on every tick', async () => {
    const t = start({ now: d(21, 10), lvs: [ROOT, snapTakenAt(d(21, 3, 0, 2), { snapPercent: '96.40' })] });
    await waitFor(() => t.probes() >= 3, 'two ticks');
    const errors = t.ctx.log.lines.filter((l) => l.startsWith('error: health: vgroup/snap0 is 96.4% full'));
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(t.count('lvcreate')).toBe(0);
    expect(t.info().lastHealth).toMatch(/^error: vgroup\/snap0 is 96\.4% full/);
    await stop(t.ctx);
  });

  it('repairs an interrupted rotation at start', async () => {
    const t = start({
      now: d(21, 10),
      lvs: [ROOT, snapTakenAt(d(21, 3)), snapTakenAt(d(21, 9), { name: 'snap0-next', minor: 202 })],
    });
    await waitFor(
      () => t.ctx.log.lines.includes('info: daemon: interrupted rotation repaired'),
      'the repair',
    );
    expect(t.runner.calls.filter((c) => c.mutates).map((c) => c.argv.join(' '))).toEqual([
      'lvremove --yes vgroup/snap0',
      'lvrename vgroup snap0-next snap0',
    ]);
    // The repaired snap0 was taken at 09:00, after today's slot: no daily backup.
    await waitFor(() => t.probes() >= 4, 'a tick after the repair');
    expect(t.count('lvcreate')).toBe(0);
    await stop(t.ctx);
  });

  it('a failed daily backup is retried after 15 minutes, not on every tick', async () => {
    const t = start({ now: d(21, 10), lvs: [ROOT, snapTakenAt(d(20, 3))] });
    t.lvm.failOnce('lvcreate', { exitCode: 5, stderr: '  Insufficient free space: 512 extents needed\n' });
    await waitFor(
      () => t.ctx.log.lines.some((l) => l.startsWith('error: daemon: daily backup failed')),
      'the failure',
    );
    const after = t.probes();
    await waitFor(() => t.probes() >= after + 1, 'one more tick');
    expect(t.count('lvcreate')).toBe(1);
    t.clock.set(d(21, 10, 16));
    await waitFor(() => t.count('lvcreate') === 2, 'the retry');
    await waitFor(
      () => t.lvm.vg.tags?.length === 0 && t.lvm.find('snap0-next') === undefined,
      'the retry to finish',
    );
    expect(t.lvm.find('snap0')?.tags).toContain(`zshield_time=${epoch(d(21, 10, 16))}`);
    await stop(t.ctx);
  });

  it('SIGHUP reloads the config; a broken one is refused and the old one kept', async () => {
    let calls = 0;
    const t = start({
      now: d(21, 10),
      lvs: [ROOT, snapTakenAt(d(21, 3, 0, 2))],
      reload: async () => {
        calls++;
        throw new Error('config: /etc/zshield/zshield.conf:3:1: Unexpected token');
      },
    });
    await waitFor(() => t.probes() >= 2, 'the first tick');
    process.emit('SIGHUP', 'SIGHUP');
    await waitFor(() => calls === 1, 'the reload');
    await waitFor(() => t.ctx.log.lines.some((l) => l.includes('config not reloaded')), 'the refusal');
    expect(t.ctx.config.daemon.checkEverySeconds).toBe(1);
    await stop(t.ctx);
  });
});
