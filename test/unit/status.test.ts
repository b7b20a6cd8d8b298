import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeDaemonInfo } from '../../src/daemon/info.js';
import { lastBackupFile, writeJsonAtomic } from '../../src/state/store.js';
import { formatStatus, gatherStatus } from '../../src/status/status.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { epoch, GiB, type LvRow } from './helpers/lvm-json.js';

const NOW = new Date(2026, 10, 21, 14, 0, 0);
const TAKEN = new Date(2026, 10, 21, 3, 0, 0);
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB };
const SNAP: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '85.00',
  tags: ['zshield_reason=daily', `zshield_time=${epoch(TAKEN)}`],
  minor: 3,
};

describe('gatherStatus / formatStatus', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  const status = async (lvm: FakeLvm, runner = new RecordingRunner()) => {
    const ctx = testContext({ runner: lvm.install(runner), dir, clock: new FakeClock(NOW) });
    return { report: await gatherStatus(ctx), runner, ctx };
  };

  it('reports the restore point, its health, age and the next daily run; reads only', async () => {
    const { report, runner } = await status(new FakeLvm({ lvs: [ROOT, SNAP] }));
    expect(runner.calls.every((c) => !c.mutates)).toBe(true);
    expect(report.snapshot).toEqual({
      name: 'snap0',
      present: true,
      valid: true,
      merging: false,
      fillPercent: 85,
      sizeBytes: 2 * GiB,
      reason: 'daily',
      time: TAKEN.toISOString(),
      ageSeconds: 11 * 3600,
    });
    expect(report.health.level).toBe('warn');
    expect(report.daemon).toEqual({
      running: false,
      pid: null,
      nextRun: new Date(2026, 10, 22, 3, 0).toISOString(),
      lastHealth: null,
    });
    const text = formatStatus(report);
    expect(text).toMatch(/^health: +WARNING: vgroup\/snap0 is 85\.0% full/);
    expect(text).toContain('restore point: snap0, valid, 85.0% full of 2.0 GiB');
    expect(text).toContain(`  taken:       ${TAKEN.toISOString()} (11 h ago), reason: daily`);
    // No record file, but snap0's tags tell of a backup: that is the last backup.
    expect(report.lastBackup).toMatchObject({
      result: 'ok',
      reason: 'daily',
      at: TAKEN.toISOString(),
      from: 'vgroup/snap0 tags',
    });
    expect(text).toContain(
      `last backup:   ok (daily, ${TAKEN.toISOString()}); known from vgroup/snap0's tags only, no record of the run here`,
    );
  });

  it('no record and no snapshot: "no record"', async () => {
    const { report } = await status(new FakeLvm({ lvs: [{ ...ROOT, attr: '-wi-ao----' }] }));
    expect(report.lastBackup).toBeNull();
    expect(formatStatus(report)).toContain('last backup:   no record');
  });

  it('shows an interrupted rotation and the last failed backup', async () => {
    writeJsonAtomic(lastBackupFile(`${dir}/state`), {
      result: 'failed',
      reason: 'daily',
      at: TAKEN.toISOString(),
      durationMs: 4000,
      error: 'lvcreate failed (exit 5)',
    });
    const { report } = await status(new FakeLvm({ vg: { tags: ['zshield_rotating'] }, lvs: [ROOT, SNAP] }));
    expect(report.rotationInterrupted).toBe(true);
    const text = formatStatus(report);
    expect(text).toContain('rotation:      INTERRUPTED');
    expect(text).toContain(`last backup:   FAILED: lvcreate failed (exit 5) (daily, ${TAKEN.toISOString()})`);
  });

  it('a running daemon (live pid) is shown with its own next run', async () => {
    writeDaemonInfo(`${dir}/run`, {
      pid: process.pid,
      startedAt: TAKEN.toISOString(),
      nextRun: '2026-11-22T03:00:00.000Z',
      lastCheck: null,
      lastHealth: 'ok: fine',
    });
    const { report } = await status(new FakeLvm({ lvs: [ROOT, SNAP] }));
    expect(report.daemon).toEqual({
      running: true,
      pid: process.pid,
      nextRun: '2026-11-22T03:00:00.000Z',
      lastHealth: 'ok: fine',
    });
  });

  it('no VG, no lv-root, no snapshot, merge pending: each is said plainly', async () => {
    const noVg = await status(new FakeLvm({ vg: { name: 'other' }, lvs: [] }));
    expect(noVg.report.vg).toBeNull();
    expect(noVg.report.health).toEqual({ level: 'error', message: 'volume group vgroup not found' });
    const noRoot = await status(new FakeLvm({ lvs: [] }));
    expect(noRoot.report.health).toEqual({
      level: 'error',
      message: 'logical volume vgroup/lv-root not found',
    });
    const noSnap = await status(new FakeLvm({ lvs: [{ ...ROOT, attr: '-wi-ao----' }] }));
    expect(formatStatus(noSnap.report)).toContain('restore point: none (snap0 does not exist)');
    const merging = await status(
      new FakeLvm({
        lvs: [
          { ...ROOT, attr: 'Owi-a-s---' },
          { ...SNAP, attr: 'Swi-a-s---' },
        ],
      }),
    );
    expect(merging.report.root?.mergePending).toBe(true);
    expect(formatStatus(merging.report)).toContain('restore (merge) pending');
    expect(formatStatus(merging.report)).toContain('restore point: snap0, merging');
  });

  it('missing lvs: MissingToolError before probing', async () => {
    const runner = new RecordingRunner().withoutTool('lvs');
    await expect(status(new FakeLvm({ lvs: [] }), runner)).rejects.toThrow('required tool not found: lvs');
    expect(runner.calls).toEqual([]);
  });
});
