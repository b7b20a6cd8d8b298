import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandError, NotFoundError, RefusedError } from '../../src/errors.js';
import { backupLocked, repairIfNeeded, runBackup } from '../../src/restore-point/backup.js';
import { acquireLvmLock } from '../../src/system/lock.js';
import { deviceOf } from '../../src/system/mounts.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { epoch, GiB, type LvRow } from './helpers/lvm-json.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';

const VGS = [
  'vgs',
  '--reportformat',
  'json',
  '--units',
  'b',
  '--nosuffix',
  '-o',
  'vg_name,vg_size,vg_free,vg_extent_size,vg_free_count,vg_tags',
  'vgroup',
];
const LVS = [
  'lvs',
  '--reportformat',
  'json',
  '--units',
  'b',
  '--nosuffix',
  '-a',
  '-o',
  'lv_name,vg_name,lv_path,lv_attr,lv_size,origin,snap_percent,lv_tags,lv_time,lv_kernel_major,lv_kernel_minor',
  '--config',
  'report/time_format="%s"',
  'vgroup',
];

const NOW = new Date(2026, 10, 21, 14, 30, 0);
const T = epoch(NOW);
// Kernel numbers no real / has (so lv-root is "not the running root" unless a test says so).
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB, major: 253, minor: 200 };
const SNAP: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '37.00',
  tags: ['zshield_reason=daily', 'zshield_time=1763690400'],
  minor: 201,
};
const create = (name: string, reason: string, boot = 'none') => [
  'lvcreate',
  '--snapshot',
  '--name',
  name,
  '--size',
  `${2 * GiB}b`,
  '--addtag',
  `zshield_reason=${reason}`,
  '--addtag',
  `zshield_time=${T}`,
  '--addtag',
  `zshield_boot=${boot}`,
  'vgroup/lv-root',
];

describe('runBackup', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  const setup = (lvs: LvRow[], opts: { free?: number; tags?: string[]; dryRun?: boolean } = {}) => {
    const lvm = new FakeLvm({ vg: { freeExtents: opts.free ?? 2000, tags: opts.tags ?? [] }, lvs });
    const runner = lvm.install(new RecordingRunner(opts.dryRun ?? false));
    const ctx = testContext({ runner, dir, clock: new FakeClock(NOW), dryRun: opts.dryRun ?? false });
    const record = () => JSON.parse(readFileSync(path.join(dir, 'state', 'last-backup.json'), 'utf8'));
    return { lvm, runner, ctx, record };
  };

  it('create-first rotation: exact transcript, then a probe that sees the new snap0', async () => {
    const { lvm, runner, ctx, record } = setup([ROOT, SNAP]);
    const outcome = await runBackup(ctx, { reason: 'manual', waitMs: 0 });
    expect(runner.calls.map((c) => c.argv)).toEqual([
      VGS,
      LVS,
      ['vgchange', '--addtag', 'zshield_rotating', 'vgroup'],
      create('snap0-next', 'manual'),
      ['lvremove', '--yes', 'vgroup/snap0'],
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
      VGS,
      LVS,
    ]);
    expect(runner.calls.every((c) => !c.skipped)).toBe(true);
    expect(outcome).toEqual({
      snapshot: 'vgroup/snap0',
      reason: 'manual',
      sizeBytes: 2 * GiB,
      time: new Date(T * 1000),
      repaired: false,
    });
    expect(lvm.vg.tags).toEqual([]);
    expect(lvm.find('snap0')?.tags).toContain('zshield_reason=manual');
    expect(record()).toEqual({
      result: 'ok',
      reason: 'manual',
      at: NOW.toISOString(),
      durationMs: 0,
      snapshot: 'vgroup/snap0',
      sizeBytes: 2 * GiB,
      snapshotTime: new Date(T * 1000).toISOString(),
    });
    // The same record beside the event log (outside lv-root: a restore does not roll it back).
    expect(JSON.parse(readFileSync(path.join(dir, 'boot', 'last-backup.json'), 'utf8'))).toEqual(record());
    // The plan went to the log, step by step, not to stdout.
    expect(ctx.printed).toEqual([]);
    expect(ctx.log.lines).toContain('info: [4/5] rename snap0-next to snap0');
    // The lock was released.
    const again = await acquireLvmLock({
      runDir: ctx.config.paths.runDir,
      log: ctx.log,
      purpose: 't',
      waitMs: 0,
    });
    await again.release();
  });

  it('the very first backup: one lvcreate', async () => {
    const { runner, ctx } = setup([{ ...ROOT, attr: '-wi-ao----' }]);
    const outcome = await runBackup(ctx, { reason: 'factory', waitMs: 0 });
    expect(runner.calls.map((c) => c.argv)).toEqual([VGS, LVS, create('snap0', 'factory'), VGS, LVS]);
    expect(outcome?.reason).toBe('factory');
  });

  it('record: false (the post-restore backup from the golden medium): the snapshot is taken, no record file is written', async () => {
    const { runner, ctx } = setup([{ ...ROOT, attr: '-wi-ao----' }]);
    const outcome = await backupLocked(ctx, 'post-restore', { record: false });
    expect(runner.calls.map((c) => c.argv)).toEqual([VGS, LVS, create('snap0', 'post-restore'), VGS, LVS]);
    expect(outcome?.reason).toBe('post-restore');
    expect(existsSync(path.join(dir, 'state', 'last-backup.json'))).toBe(false);
    expect(existsSync(path.join(dir, 'boot', 'last-backup.json'))).toBe(false);
    await runBackup(ctx, { reason: 'manual', waitMs: 0 });
    expect(existsSync(path.join(dir, 'boot', 'last-backup.json'))).toBe(true);
  });

  it('dry-run: only the read-only probe runs; the plan is printed; no lock, no record', async () => {
    const { runner, ctx } = setup([ROOT, SNAP], { dryRun: true });
    const outcome = await runBackup(ctx, { reason: 'pre-upgrade', waitMs: 0 });
    expect(outcome).toBeNull();
    expect(runner.calls.map((c) => c.argv)).toEqual([VGS, LVS]);
    expect(runner.calls.every((c) => !c.mutates && !c.skipped)).toBe(true);
    expect(ctx.printed).toHaveLength(2);
    expect(ctx.printed[1]).toBe(DRY_RUN_DONE);
    const text = ctx.printed[0]!;
    expect(text.split('\n')[0]).toBe('Back up vgroup/lv-root to snap0 (reason: pre-upgrade)');
    expect(text).toContain('     $ vgchange --addtag zshield_rotating vgroup');
    expect(text).toContain(
      `     $ lvcreate --snapshot --name snap0-next --size ${2 * GiB}b --addtag zshield_reason=pre-upgrade --addtag zshield_time=${T} --addtag zshield_boot=none vgroup/lv-root`,
    );
    expect(text).toContain('     $ lvremove --yes vgroup/snap0');
    expect(existsSync(path.join(dir, 'state', 'last-backup.json'))).toBe(false);
    expect(existsSync(path.join(dir, 'boot', 'last-backup.json'))).toBe(false);
    expect(existsSync(path.join(dir, 'run', 'lvm.lock.owner'))).toBe(false);
  });

  it('dry-run with an interrupted rotation shows the repair, then the backup planned on what it leaves', async () => {
    const { runner, ctx } = setup([ROOT, SNAP], { dryRun: true, tags: ['zshield_rotating'] });
    expect(await runBackup(ctx, { reason: 'manual', waitMs: 0 })).toBeNull();
    expect(runner.calls.map((c) => c.argv[0])).toEqual(['vgs', 'lvs']);
    expect(runner.calls.every((c) => !c.mutates)).toBe(true);
    expect(ctx.printed[0]).toMatch(/^Repair the interrupted rotation in vgroup\n/);
    expect(ctx.printed[0]).toContain('$ vgchange --deltag zshield_rotating vgroup');
    // The rotation is planned as if the mark were gone (it refuses a marked VG otherwise).
    expect(ctx.printed[1]).toMatch(/^Back up vgroup\/lv-root to snap0 \(reason: manual\)/);
    // One line for the whole dry run, after the last plan.
    expect(ctx.printed.slice(2)).toEqual([DRY_RUN_DONE]);
  });

  it('captures /boot when lv-root is the running root (kernel numbers of /)', async () => {
    const dev = deviceOf('/');
    expect(dev).not.toBeNull();
    const { ctx } = setup([{ ...ROOT, attr: '-wi-ao----', major: dev!.major, minor: dev!.minor }], {
      dryRun: true,
    });
    await runBackup(ctx, { reason: 'daily', waitMs: 0 });
    const boot = path.join(dir, 'state', 'boot');
    expect(ctx.printed[0]).toContain(`     $ mkdir -p ${boot}`);
    expect(ctx.printed[0]).toContain(`     $ rsync -a --delete --numeric-ids /boot/ ${boot}/`);
    expect(ctx.printed[0]).toContain('--addtag zshield_boot=captured');
  });

  it('a failing lvcreate is recorded as failed, leaves the rotation mark, releases the lock', async () => {
    const { lvm, runner, ctx, record } = setup([ROOT, SNAP]);
    lvm.failOnce('lvcreate', {
      exitCode: 5,
      stderr:
        '  device-mapper: reload ioctl on (253:5) failed: Cannot allocate memory\n  Failed to lock logical volume vgroup/lv-root.\n',
    });
    const err = await runBackup(ctx, { reason: 'daily', waitMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(runner.calls.map((c) => c.argv[0])).toEqual(['vgs', 'lvs', 'vgchange', 'lvcreate']);
    expect(record()).toEqual({
      result: 'failed',
      reason: 'daily',
      at: NOW.toISOString(),
      durationMs: 0,
      error: 'lvcreate failed (exit 5): Failed to lock logical volume vgroup/lv-root.',
    });
    expect(lvm.vg.tags).toEqual(['zshield_rotating']);
    expect(lvm.find('snap0')?.tags).toContain('zshield_reason=daily');

    // The next backup repairs first (clears the mark), then rotates.
    runner.calls.length = 0;
    const outcome = await runBackup(ctx, { reason: 'manual', waitMs: 0 });
    expect(outcome?.repaired).toBe(true);
    expect(runner.calls.map((c) => c.argv.slice(0, 2).join(' '))).toEqual([
      'vgs --reportformat',
      'lvs --reportformat',
      'vgchange --deltag',
      'vgs --reportformat',
      'lvs --reportformat',
      'vgchange --addtag',
      'lvcreate --snapshot',
      'lvremove --yes',
      'lvrename vgroup',
      'vgchange --deltag',
      'vgs --reportformat',
      'lvs --reportformat',
    ]);
    expect(record().result).toBe('ok');
  });

  it('refuses without space and records the refusal; nothing is changed', async () => {
    const { runner, ctx, record } = setup([ROOT, { ...SNAP, size: GiB }], { free: 10 });
    const err = await runBackup(ctx, { reason: 'manual', waitMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect(runner.calls.every((c) => !c.mutates)).toBe(true);
    expect(record()).toMatchObject({
      result: 'failed',
      error: expect.stringContaining('the old snap0 is kept'),
    });
  });

  it('lv-root missing: NotFoundError, nothing changed', async () => {
    const { runner, ctx, record } = setup([{ name: 'lv-data', attr: '-wi-ao----', size: GiB }]);
    await expect(runBackup(ctx, { reason: 'manual', waitMs: 0 })).rejects.toBeInstanceOf(NotFoundError);
    expect(runner.calls.map((c) => c.argv[0])).toEqual(['vgs', 'lvs']);
    expect(record().result).toBe('failed');
  });

  it('a rotation whose result does not verify is an error', async () => {
    const { runner, ctx, record } = setup([ROOT, SNAP]);
    // lvrename "succeeds" but changes nothing: the probe afterwards finds snap0 gone.
    runner.on((argv) => argv[0] === 'lvrename', { stdout: '' });
    await expect(runBackup(ctx, { reason: 'manual', waitMs: 0 })).rejects.toThrow(
      'after the rotation vgroup/snap0 is missing or invalid',
    );
    expect(record().result).toBe('failed');
  });

  it('another holder of the LVM lock: BusyError, nothing probed', async () => {
    const { runner, ctx } = setup([ROOT, SNAP]);
    const other = await acquireLvmLock({
      runDir: ctx.config.paths.runDir,
      log: ctx.log,
      purpose: 'daemon',
      waitMs: 0,
    });
    try {
      await expect(runBackup(ctx, { reason: 'manual', waitMs: 0 })).rejects.toThrow(
        /LVM is locked by pid \d+ \(daemon/,
      );
      expect(runner.calls).toEqual([]);
    } finally {
      await other.release();
    }
  });
});

describe('repairIfNeeded', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it('nothing to repair: "none", read-only', async () => {
    const lvm = new FakeLvm({ lvs: [ROOT, SNAP] });
    const runner = lvm.install(new RecordingRunner());
    const ctx = testContext({ runner, dir, clock: new FakeClock(NOW) });
    expect(await repairIfNeeded(ctx, 0)).toBe('none');
    expect(runner.calls.map((c) => c.argv)).toEqual([VGS, LVS]);
  });

  it('finishes a rotation cut after the new snapshot was made', async () => {
    const next = { ...SNAP, name: 'snap0-next', minor: 202 };
    const lvm = new FakeLvm({ vg: { tags: ['zshield_rotating'] }, lvs: [ROOT, SNAP, next] });
    const runner = lvm.install(new RecordingRunner());
    const ctx = testContext({ runner, dir, clock: new FakeClock(NOW) });
    expect(await repairIfNeeded(ctx, 0)).toBe('repaired');
    expect(runner.calls.map((c) => c.argv)).toEqual([
      VGS,
      LVS,
      ['lvremove', '--yes', 'vgroup/snap0'],
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
      VGS,
      LVS,
    ]);
    expect(lvm.lvs.map((l) => l.name)).toEqual(['lv-root', 'snap0']);
  });

  it('a rotation cut after the old one was dropped first: clear the mark and take a backup', async () => {
    const lvm = new FakeLvm({ vg: { tags: ['zshield_rotating'] }, lvs: [{ ...ROOT, attr: '-wi-ao----' }] });
    const runner = lvm.install(new RecordingRunner());
    const ctx = testContext({ runner, dir, clock: new FakeClock(NOW) });
    expect(await repairIfNeeded(ctx, 0)).toBe('backed-up');
    expect(runner.calls.filter((c) => c.mutates).map((c) => c.argv)).toEqual([
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
      create('snap0', 'repair'),
    ]);
    expect(ctx.log.lines).toContain('warn: no snap0 is left after the repair: taking a backup now');
  });
});

describe('backup --dry-run --json: the complete plan, and a run applies exactly its steps', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  const NEXT: LvRow = {
    ...SNAP,
    name: 'snap0-next',
    tags: ['zshield_reason=manual', 'zshield_time=1763690500'],
  };
  const cases: [string, LvRow[], string[]][] = [
    ['a plain create-first rotation', [ROOT, SNAP], []],
    [
      'a rotation cut after snap0-next was made: the repair, then the rotation',
      [ROOT, SNAP, NEXT],
      ['zshield_rotating'],
    ],
    ['the first backup', [ROOT], []],
  ];
  for (const [name, lvs, tags] of cases) {
    it(name, async () => {
      const plan = async () => {
        const lvm = new FakeLvm({ vg: { freeExtents: 2000, tags }, lvs });
        const runner = lvm.install(new RecordingRunner(true));
        const ctx = testContext({ runner, dir, clock: new FakeClock(NOW), dryRun: true });
        await runBackup(ctx, { reason: 'manual', waitMs: 0, json: true });
        expect(runner.calls.every((c) => !c.mutates)).toBe(true);
        return JSON.parse(ctx.printed.join('\n')) as { steps: { argv: string[] }[] };
      };
      const printed = (await plan()).steps.map((s) => s.argv);
      const lvm = new FakeLvm({ vg: { freeExtents: 2000, tags }, lvs });
      const runner = lvm.install(new RecordingRunner());
      const ctx = testContext({ runner, dir, clock: new FakeClock(NOW) });
      await runBackup(ctx, { reason: 'manual', waitMs: 0, json: true });
      expect(runner.calls.filter((c) => c.mutates).map((c) => c.argv)).toEqual(printed);
      expect(printed.length).toBeGreaterThan(0);
    });
  }
});
