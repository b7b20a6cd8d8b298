import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Config, defaultConfig } from '../../src/config/schema.js';
import { RefusedError } from '../../src/errors.js';
import { type AptHookFacts, decideAptHook, probeAptFacts, runAptHook } from '../../src/hooks/apt.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { GiB, type LvRow, epoch } from './helpers/lvm-json.js';

const NOW = new Date(Date.UTC(2026, 10, 21, 14, 30, 0));
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB, major: 253, minor: 200 };
const snapAt = (d: Date, attr = 'swi-a-s---'): LvRow => ({
  name: 'snap0',
  attr,
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '3.00',
  tags: ['zshield_reason=daily', `zshield_time=${epoch(d)}`],
  minor: 201,
});
const minutesBefore = (m: number) => new Date(NOW.getTime() - m * 60_000);

const HEALTHY: AptHookFacts = { chroot: false, container: null, rootReadOnly: false, restorePointTime: null };
/** A box set up by the vendor: its config names the system disk. */
const setUp =
  (edit?: (c: Config) => void) =>
  (c: Config): Config => {
    c.disks.system.serial = 'SYS-1';
    edit?.(c);
    return c;
  };
const configured = (edit?: (c: Config) => void): Config => setUp(edit)(defaultConfig());
const SELF = ['/usr/sbin/zshield'];
const BACKUP_ARGV = ['/usr/sbin/zshield', 'backup', '--reason', 'pre-upgrade', '--wait', '270'];

describe('decideAptHook', () => {
  it('takes a backup on a set-up box with no restore point, within the time limit', () => {
    expect(decideAptHook(HEALTHY, configured(), NOW)).toEqual({
      action: 'backup',
      why: 'there is no valid restore point',
      waitSeconds: 270,
      timeoutSeconds: 300,
    });
  });

  it.each<[string, Partial<AptHookFacts>, ((c: Config) => void) | undefined, RegExp]>([
    ['turned off', {}, (c) => (c.hooks.aptBackup = false), /hooks\.aptBackup is false/],
    ['in a chroot', { chroot: true }, undefined, /chroot/],
    ['in a container', { container: 'docker' }, undefined, /container \(docker\)/],
    ['on the read-only golden root', { rootReadOnly: true }, undefined, /read-only \(the golden medium\)/],
    [
      'where the config names no system disk',
      {},
      (c) => {
        c.disks.system.serial = null;
      },
      /names no system disk/,
    ],
    ['with a restore point 59 min old', { restorePointTime: minutesBefore(59) }, undefined, /59 min old/],
  ])('does nothing %s', (_name, facts, edit, why) => {
    const d = decideAptHook({ ...HEALTHY, ...facts }, configured(edit), NOW);
    expect(d.action).toBe('skip');
    expect(d.why).toMatch(why);
  });

  it('the disabled setting wins over everything else; a WWN names the disk too', () => {
    const off = configured((c) => (c.hooks.aptBackup = false));
    expect(decideAptHook({ ...HEALTHY, chroot: true }, off, NOW).why).toMatch(/aptBackup/);
    const byWwn = configured((c) => {
      c.disks.system.serial = null;
      c.disks.system.wwn = '0x5000c500a1b2c3d4';
    });
    expect(decideAptHook(HEALTHY, byWwn, NOW).action).toBe('backup');
  });

  it('takes one again once the interval has passed, at 0 always, and after a clock moved back', () => {
    expect(decideAptHook({ ...HEALTHY, restorePointTime: minutesBefore(61) }, configured(), NOW).action).toBe(
      'backup',
    );
    const always = configured((c) => (c.hooks.aptMinIntervalMinutes = 0));
    expect(decideAptHook({ ...HEALTHY, restorePointTime: minutesBefore(1) }, always, NOW).action).toBe(
      'backup',
    );
    const future = new Date(NOW.getTime() + 3600_000);
    expect(decideAptHook({ ...HEALTHY, restorePointTime: future }, configured(), NOW).action).toBe('backup');
  });

  it('keeps the lock wait inside the time limit', () => {
    const d = decideAptHook(
      HEALTHY,
      configured((c) => (c.hooks.aptTimeoutSeconds = 20)),
      NOW,
    );
    expect(d).toMatchObject({ action: 'backup', waitSeconds: 1, timeoutSeconds: 20 });
  });
});

describe('probeAptFacts', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir();
  });
  afterEach(() => t.cleanup());

  const ctxWith = (lvs: LvRow[] | null) => {
    const runner = new RecordingRunner();
    if (lvs) new FakeLvm({ lvs }).install(runner);
    else runner.on('vgs', { exitCode: 5, stderr: '  Volume group "vgroup" not found' });
    return testContext({ runner, dir: t.dir, clock: new FakeClock(NOW), edit: setUp() });
  };

  it('sees a chroot, a container marker and the restore point time', async () => {
    const other = path.join(t.dir, 'other-root');
    mkdirSync(other);
    const marker = path.join(t.dir, 'containerenv');
    writeFileSync(marker, 'podman\n');
    const facts = await probeAptFacts(ctxWith([ROOT, snapAt(minutesBefore(5))]), {
      root: t.dir,
      pid1Root: other,
      containerMarkers: [marker],
      pid1Environ: path.join(t.dir, 'none'),
    });
    expect(facts).toEqual({
      chroot: true,
      container: 'podman',
      rootReadOnly: false,
      restorePointTime: minutesBefore(5),
    });
  });

  it('sees the real root as no chroot, and no restore point when snap0 is invalid or the VG is missing', async () => {
    const paths = {
      root: t.dir,
      pid1Root: t.dir,
      containerMarkers: [],
      pid1Environ: path.join(t.dir, 'environ'),
    };
    writeFileSync(paths.pid1Environ, 'PATH=/bin\0HOME=/\0');
    const invalid = await probeAptFacts(ctxWith([ROOT, snapAt(minutesBefore(5), 'swi-I-s---')]), paths);
    expect(invalid).toEqual({ chroot: false, container: null, rootReadOnly: false, restorePointTime: null });
    writeFileSync(paths.pid1Environ, 'container=lxc\0');
    const noVg = await probeAptFacts(ctxWith(null), paths);
    expect(noVg).toMatchObject({ container: 'lxc', restorePointTime: null });
    // Docker's marker is empty: the container is named for it.
    writeFileSync(path.join(t.dir, '.dockerenv'), '');
    expect(
      await probeAptFacts(ctxWith(null), { ...paths, containerMarkers: [path.join(t.dir, '.dockerenv')] }),
    ).toMatchObject({ container: 'docker' });
    // No /proc at all: an image being built.
    expect(
      await probeAptFacts(ctxWith(null), { ...paths, pid1Root: path.join(t.dir, 'no-proc') }),
    ).toMatchObject({
      chroot: true,
    });
  });
});

describe('runAptHook', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir();
  });
  afterEach(() => t.cleanup());

  // A box where every fact allows a backup (/ is PID 1's root, no container marker, a writable
  // root: the test's own); LVM is the fake. The other rules are decideAptHook's tests.
  const setup = (opts: {
    dryRun?: boolean;
    edit?: (c: Config) => void;
    backup?: { exitCode: number; stderr?: string };
  }) => {
    const runner = new RecordingRunner(opts.dryRun ?? false);
    new FakeLvm({ lvs: [ROOT, snapAt(minutesBefore(600))] }).install(runner);
    runner.on(
      (argv) => argv[0] === SELF[0],
      opts.backup ?? {
        exitCode: 0,
        stdout: 'backup taken: snap0 (pre-upgrade) at 2026-11-21T14:30:01.000Z\n',
      },
    );
    const ctx = testContext({
      runner,
      dir: t.dir,
      clock: new FakeClock(NOW),
      dryRun: opts.dryRun,
      edit: setUp(opts.edit),
    });
    return { runner, ctx };
  };
  const facts = { root: '/tmp', pid1Root: '/tmp', containerMarkers: [], pid1Environ: '/nonexistent' };

  it('runs zshield backup --reason pre-upgrade with the lock wait and the time limit', async () => {
    const { runner, ctx } = setup({});
    const r = await runAptHook(ctx, SELF, facts);
    expect(r).toEqual({
      action: 'backup',
      why: `the restore point is from ${minutesBefore(600).toISOString()}`,
      result: 'taken',
      error: null,
    });
    const call = runner.calls.find((c) => c.argv[0] === SELF[0])!;
    expect(call.argv).toEqual(BACKUP_ARGV);
    expect(call.mutates).toBe(true);
    expect(ctx.log.lines.join('\n')).toMatch(/apt hook: backup taken: snap0 \(pre-upgrade\)/);
  });

  it('in a dry run decides and runs nothing', async () => {
    const { runner, ctx } = setup({ dryRun: true });
    expect((await runAptHook(ctx, SELF, facts)).result).toBe('dry-run');
    expect(runner.calls.some((c) => c.argv[0] === SELF[0])).toBe(false);
  });

  it('on failure lets the upgrade go on, logged and said, unless hooks.aptRequireBackup', async () => {
    const failing = {
      exitCode: 6,
      stderr: 'zshield: not enough free space in vgroup for snap0\n  hint: x\n',
    };
    const a = setup({ backup: failing });
    const r = await runAptHook(a.ctx, SELF, facts);
    expect(r).toMatchObject({ result: 'failed', error: 'not enough free space in vgroup for snap0' });
    expect(a.ctx.log.lines.join('\n')).toMatch(/pre-upgrade backup failed .*the upgrade goes on/);

    const b = setup({ backup: failing, edit: (c) => (c.hooks.aptRequireBackup = true) });
    await expect(runAptHook(b.ctx, SELF, facts)).rejects.toThrow(RefusedError);
    await expect(runAptHook(b.ctx, SELF, facts)).rejects.toThrow(/the upgrade is stopped/);
  });

  it('a box the hook skips anyway is not probed (no LVM command on every apt run)', async () => {
    const { runner, ctx } = setup({ edit: (c) => (c.hooks.aptBackup = false) });
    expect(await runAptHook(ctx, SELF, facts)).toMatchObject({
      action: 'skip',
      why: 'hooks.aptBackup is false',
    });
    expect(runner.calls).toEqual([]);
  });

  it('a skip runs no backup', async () => {
    const { runner, ctx } = setup({ edit: (c) => (c.hooks.aptMinIntervalMinutes = 24 * 60) });
    expect(await runAptHook(ctx, SELF, facts)).toMatchObject({ action: 'skip', result: 'skipped' });
    expect(runner.calls.some((c) => c.argv[0] === SELF[0])).toBe(false);
  });
});
