import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NotFoundError, RefusedError } from '../../src/errors.js';
import { type GoldenProbes, runGoldenPrepare } from '../../src/golden/prepare-run.js';
import { BOOT_UUID_TAG } from '../../src/recovery/boot-fs.js';
import { type FactoryProbes, runFactoryReset } from '../../src/recovery/reset.js';
import { runRestore } from '../../src/recovery/restore-latest.js';
import { resumeInterrupted } from '../../src/recovery/resume.js';
import { OFFBOX_RESTORE_TAG, FACTORY_TAG, RESTORE_OF_TAG, RESTORE_TAG } from '../../src/names/lvm-tags.js';
import { deviceOf } from '../../src/system/mounts.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { MENU_FILE } from '../../src/restore-point/boot-menu.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, type TestContext, tempDir, testContext } from './helpers/context.js';
import { disk, goldenFacts, prototypeFacts } from './helpers/disks.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { GiB, type LvRow, MiB, vgsJson } from './helpers/lvm-json.js';

// Each recovery flow run as the CLI runs it, against a recording runner and a stand-in LVM:
// `--dry-run` changes nothing and claims nothing; `--json` prints the complete plan; applying it
// runs exactly the printed commands, in the printed order (conditional steps whose condition did
// not hold are named).

const BOOT_UUID = '0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e';
const SNAP_TAGS = ['zshield_reason=daily', 'zshield_time=1763780400', 'zshield_boot=captured'];
const here = deviceOf('/')!;

type RootState = 'inactive' | 'active' | 'running' | 'merging' | 'merged';

/** lv-root, lv-data and (unless merged) snap0, as `lvs` shows them in each state. */
function lvmWorld(root: RootState, vgTags: string[] = [`${BOOT_UUID_TAG}${BOOT_UUID}`]): FakeLvm {
  const a = root === 'inactive' || root === 'merging' ? '-' : 'a';
  const kernel = root === 'running' ? { major: here.major, minor: here.minor } : {};
  const lvs: LvRow[] = [
    {
      name: 'lv-root',
      attr:
        root === 'merged'
          ? `-wi-${a}-----`
          : `${root === 'merging' ? 'O' : 'o'}wi-${a}${root === 'running' ? 'o' : '-'}s---`,
      size: 2 * GiB,
      ...kernel,
    },
    { name: 'lv-data', attr: `-wi-${a}-----`, size: GiB },
  ];
  if (root !== 'merged') {
    lvs.push({
      name: 'snap0',
      attr: `${root === 'merging' ? 'S' : 's'}wi-${a}-s---`,
      size: 400 * MiB,
      origin: 'lv-root',
      snapPercent: a === 'a' ? '3.00' : '',
      tags: SNAP_TAGS,
    });
  }
  return new FakeLvm({ vg: { tags: vgTags }, lvs });
}

/** What LVM itself would do for the commands the stand-in does not know (activation, merge, poll). */
function install(lvm: FakeLvm, runner: RecordingRunner, blkid: string): RecordingRunner {
  lvm.install(runner);
  const root = () => lvm.find('lv-root')!;
  const dropSnap = () => {
    const snap = lvm.find('snap0');
    if (snap) {
      lvm.lvs = lvm.lvs.filter((l) => l !== snap);
      lvm.vg.freeExtents += Math.ceil(snap.size / lvm.vg.extentBytes);
    }
    root().attr = `-${root().attr.slice(1, 6)}-${root().attr.slice(7)}`;
  };
  runner.on(
    (argv) => argv[0] === 'vgchange',
    (argv) => {
      if (argv[1] === '-ay') {
        for (const l of lvm.lvs) l.attr = `${l.attr.slice(0, 4)}a${l.attr.slice(5)}`;
        return {};
      }
      for (let i = 1; i < argv.length - 1; i += 2) {
        const tags = lvm.vg.tags ?? [];
        lvm.vg.tags =
          argv[i] === '--addtag' ? [...tags, argv[i + 1]!] : tags.filter((t) => t !== argv[i + 1]);
      }
      return {};
    },
  );
  runner.on(
    (argv) => argv[0] === 'lvconvert',
    () => {
      if (root().attr[5] === 'o') {
        root().attr = `O${root().attr.slice(1)}`;
        lvm.find('snap0')!.attr = `S${lvm.find('snap0')!.attr.slice(1)}`;
        return { stdout: '  Delaying merge since origin is open.\n' };
      }
      dropSnap();
      return { stdout: '  vgroup/snap0: Merged: 0.00%\n' };
    },
  );
  runner.on(
    (argv) => argv[0] === 'lvm' && argv[1] === 'lvpoll',
    () => {
      dropSnap();
      return {};
    },
  );
  runner.on('blkid', { stdout: blkid });
  return runner;
}

const bootBlkid = (uuid = BOOT_UUID) =>
  `DEVNAME=/dev/vda1\nUUID=1111-golden\nTYPE=ext4\nLABEL=zs-golden\n\nDEVNAME=/dev/vdb1\nUUID=${uuid}\nTYPE=ext4\nLABEL=zs-boot\n\nDEVNAME=/dev/vdb2\nUUID=pv-uuid\nTYPE=LVM2_member\n`;

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups) c();
  cleanups = [];
});

function context(runner: RecordingRunner, dryRun: boolean): TestContext {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const hooksDir = path.join(t.dir, 'hooks.d');
  mkdirSync(hooksDir);
  return testContext({
    runner,
    dir: t.dir,
    clock: new FakeClock(new Date('2026-11-29T03:00:00Z')),
    dryRun,
    edit: (c) => {
      c.recovery.hooksDir = hooksDir;
      c.recovery.countdownSeconds = 0;
    },
  });
}

interface JsonStep {
  title: string;
  argv?: string[];
  pipeline?: string[][];
  edit?: string[];
  when?: string;
}
interface JsonPlan {
  title: string;
  notes: string[];
  checks?: string[];
  steps: JsonStep[];
  always?: JsonStep[];
  later?: JsonStep[];
}

const printedPlan = (ctx: TestContext): JsonPlan => JSON.parse(ctx.printed[0]!) as JsonPlan;
const mutatingCalls = (runner: RecordingRunner) => runner.calls.filter((c) => c.mutates).map((c) => c.argv);

/**
 * The applied commands are the printed steps' argv in order, less the conditional steps named in
 * `skipped` (edits run no command). Returns the plan for further checks.
 */
function expectAppliedAsPrinted(ctx: TestContext, runner: RecordingRunner, skipped: string[]): JsonPlan {
  const plan = printedPlan(ctx);
  const printed = [...plan.steps, ...(plan.always ?? [])].filter(
    (s) => s.argv && !(s.when && skipped.includes(s.title)),
  );
  for (const s of skipped) expect(ctx.log.lines).toContainEqual(expect.stringContaining(`${s}: skipped`));
  expect(mutatingCalls(runner)).toEqual(printed.map((s) => s.argv));
  return plan;
}

/** A dry run: nothing that changes anything ran (activation included), only the plan was printed. */
function expectDryRun(ctx: TestContext, runner: RecordingRunner): void {
  expect(runner.calls.filter((c) => c.mutates)).toEqual([]);
  expect(runner.calls.map((c) => c.argv[0])).not.toContain('vgchange');
  expect(ctx.printed).toHaveLength(1);
  const claims = /\b(done|was taken|written|finished|restored|removed|created)\b/i;
  expect(ctx.log.lines.filter((l) => claims.test(l) && !l.includes('skipped'))).toEqual([]);
}

const goldenDisk = disk('vda', 'ZS-GOLDEN-CF', 2, {
  partitions: [{ name: 'vda1', path: '/dev/vda1', fsType: 'ext4', mount: '/', label: 'zs-golden' }],
});
const factoryProbes: FactoryProbes = {
  disks: async () => ({ disks: [goldenDisk, disk('vdb', 'ZS-SYSTEM-HDD', 8)], bootDisks: ['vda'] }),
  pvs: async () => [],
  golden: async () => goldenFacts({ goldenUuid: '1111-golden' }),
};

describe('factory reset', () => {
  it('--dry-run --json prints the whole plan (checks, the reset, the record on the new /boot) and changes nothing', async () => {
    const runner = new RecordingRunner(true);
    const ctx = context(runner, true);
    await runFactoryReset(ctx, { confirm: 'yes', json: true }, factoryProbes);
    expectDryRun(ctx, runner);
    const plan = printedPlan(ctx);
    expect(plan.title).toBe('Factory reset of /dev/vdb');
    expect(plan.checks).toEqual([
      `mount points can be made under ${ctx.config.paths.runDir}`,
      'the new lv-root (3.4 GiB) has room for 600 MiB',
      'the new /boot (512 MiB) has room for 60.0 MiB',
    ]);
    expect(plan.steps.at(0)?.argv).toEqual(['wipefs', '-a', '-q', '/dev/vdb']);
    expect(plan.steps.find((s) => s.argv?.[0] === 'vgcreate')?.argv).toContain(FACTORY_TAG);
    expect(plan.steps.map((s) => s.title).slice(-4)).toEqual([
      `make ${ctx.config.paths.runDir}/boot`,
      'mount the new /boot',
      'record the factory-reset in the event log',
      `unmount ${ctx.config.paths.runDir}/boot`,
    ]);
  });

  it('the record on the new /boot: its mount and umount, pinned (issue 22: their argv moved to src/system/)', async () => {
    const runner = new RecordingRunner(true);
    const ctx = context(runner, true);
    await runFactoryReset(ctx, { confirm: 'yes', json: true }, factoryProbes);
    const run = ctx.config.paths.runDir;
    expect(
      printedPlan(ctx)
        .steps.slice(-4)
        .map((s) => s.argv ?? null),
    ).toEqual([
      ['mkdir', '-p', `${run}/boot`],
      ['mount', '-t', 'ext4', '/dev/vdb1', `${run}/boot`],
      null,
      ['umount', `${run}/boot`],
    ]);
  });

  it('applied: exactly the printed commands, the /boot UUID tagged on the VG, the event recorded', async () => {
    const runner = new RecordingRunner(false);
    const ctx = context(runner, false);
    await runFactoryReset(ctx, { confirm: 'yes', json: true }, factoryProbes);
    const plan = expectAppliedAsPrinted(ctx, runner, [
      `unmount ${ctx.config.paths.runDir}/boot if a failure left it mounted`,
    ]);
    const uuid = plan.steps.find((s) => s.title === 'make the /boot file system')!.argv!.at(-4);
    expect(plan.steps.find((s) => s.argv?.[0] === 'vgcreate')?.argv).toContain(`${BOOT_UUID_TAG}${uuid}`);
    const events = readFileSync(ctx.config.paths.eventLog, 'utf8');
    expect(JSON.parse(events)).toMatchObject({ event: 'factory-reset', result: 'ok', hooks: [] });
    expect(ctx.printed.at(-1)).toMatch(/^factory reset done in \d+ s$/);
  });

  it('without --yes: the plan is shown, then refused, nothing run', async () => {
    const runner = new RecordingRunner(false);
    const ctx = context(runner, false);
    await expect(runFactoryReset(ctx, { confirm: 'ask' }, factoryProbes)).rejects.toThrow(RefusedError);
    expect(mutatingCalls(runner)).toEqual([]);
  });
});

describe('restore latest from the golden medium (VG not active)', () => {
  it('--dry-run --json: the mark, the merge and the whole finishing phase are printed; nothing is activated', async () => {
    const lvm = lvmWorld('inactive');
    const runner = install(lvm, new RecordingRunner(true), bootBlkid());
    const ctx = context(runner, true);
    await runRestore(ctx, { confirm: 'yes', json: true });
    expectDryRun(ctx, runner);
    expect(lvm.find('lv-root')!.attr).toBe('owi---s---');
    const plan = printedPlan(ctx);
    const run = ctx.config.paths.runDir;
    expect(plan.notes).toContain(
      '/boot: /dev/vdb1 (ext4, UUID 0d6f7b39-2c1b-4a7e-9a0e-3f1c2b3a4d5e, recorded at factory reset)',
    );
    expect(plan.checks).toEqual([
      "the system's /boot is found by its file system and the kernel can mount it",
      `mount points can be made under ${run}`,
      'vgroup has room for a new snap0 after the merge',
    ]);
    expect(plan.steps.map((s) => s.argv ?? s.edit)).toEqual([
      ['vgchange', '-ay', 'vgroup'],
      ['mkdir', '-p', `${run}/restore/snap0`],
      ['mount', '-o', 'ro,noload', '/dev/vgroup/snap0', `${run}/restore/snap0`],
      ['umount', `${run}/restore/snap0`],
      [
        'vgchange',
        '--addtag',
        RESTORE_TAG,
        '--addtag',
        `${RESTORE_OF_TAG}1763780400.daily.captured`,
        'vgroup',
      ],
      ['lvconvert', '--merge', '-i', '1', 'vgroup/snap0'],
      ['mkdir', '-p', `${run}/restore/root`, `${run}/restore/boot`],
      ['mount', '-o', 'ro', '/dev/vgroup/lv-root', `${run}/restore/root`],
      ['mount', '-t', 'ext4', '/dev/vdb1', `${run}/restore/boot`],
      [
        'rsync',
        '-a',
        '--delete',
        '--numeric-ids',
        '--exclude=/zshield/',
        '--exclude=/lost+found',
        `${run}/restore/root${ctx.config.paths.stateDir}/boot/`,
        `${run}/restore/boot/`,
      ],
      [ctx.config.paths.eventLog],
      ['umount', `${run}/restore/boot`],
      ['umount', `${run}/restore/root`],
      expect.arrayContaining([
        'lvcreate',
        '--snapshot',
        '--name',
        'snap0',
        '--addtag',
        'zshield_reason=post-restore',
      ]),
      [
        'vgchange',
        '--deltag',
        RESTORE_TAG,
        '--deltag',
        `${RESTORE_OF_TAG}1763780400.daily.captured`,
        'vgroup',
      ],
      ['sync'],
    ]);
    expect(plan.steps.find((s) => s.argv?.[0] === 'rsync')?.when).toBe(
      `if snap0 holds a captured /boot (${ctx.config.paths.stateDir}/boot)`,
    );
    expect(plan.later).toBeUndefined();
  });

  it('applied: exactly the printed commands; the VG ends with a new snap0 and no mark', async () => {
    const lvm = lvmWorld('inactive');
    const runner = install(lvm, new RecordingRunner(false), bootBlkid());
    const ctx = context(runner, false);
    const run = ctx.config.paths.runDir;
    // What the restored root holds once mounted (the stand-in mount mounts nothing).
    mkdirSync(path.join(run, 'restore/root', ctx.config.paths.stateDir, 'boot'), { recursive: true });
    await runRestore(ctx, { confirm: 'yes', json: true });
    expectAppliedAsPrinted(ctx, runner, [
      `unmount ${run}/restore/snap0 if a failure left it mounted`,
      `unmount ${run}/restore/boot if a failure left it mounted`,
      `unmount ${run}/restore/root if a failure left it mounted`,
    ]);
    expect(lvm.find('snap0')?.tags).toContain('zshield_reason=post-restore');
    expect(lvm.vg.tags).toEqual([`${BOOT_UUID_TAG}${BOOT_UUID}`]);
    expect(ctx.printed.at(-1)).toBe(
      'restore done: lv-root is back at 2025-11-22T03:00:00.000Z; a new snap0 was taken',
    );
    expect(JSON.parse(readFileSync(ctx.config.paths.eventLog, 'utf8'))).toMatchObject({
      event: 'restore',
      result: 'ok',
      snapshotReason: 'daily',
    });
  });

  it('a rotation cut after the old snap0 was removed: repaired first, then the completed snap0-next is restored', async () => {
    const lvm = lvmWorld('inactive', [`${BOOT_UUID_TAG}${BOOT_UUID}`, 'zshield_rotating']);
    lvm.find('snap0')!.name = 'snap0-next';
    const runner = install(lvm, new RecordingRunner(false), bootBlkid());
    const ctx = context(runner, false);
    await runRestore(ctx, { confirm: 'yes', json: true });
    const repair = mutatingCalls(runner).slice(0, 2);
    expect(repair).toEqual([
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
    ]);
    const plan = printedPlan(ctx);
    expect(plan.notes[0]).toMatch(/^repaired first: rename snap0-next to snap0; clear the rotation mark$/);
    expect(plan.notes).toContain(
      'restore point: vgroup/snap0, taken 2025-11-22T03:00:00.000Z (reason: daily)',
    );
    expect(mutatingCalls(runner).slice(2)).toEqual(
      plan.steps.filter((x) => x.argv && !x.when).map((x) => x.argv),
    );
  });

  it('--dry-run --json with a cut rotation: one JSON document, the repair steps first, nothing run', async () => {
    const lvm = lvmWorld('inactive', [`${BOOT_UUID_TAG}${BOOT_UUID}`, 'zshield_rotating']);
    lvm.find('snap0')!.name = 'snap0-next';
    const runner = install(lvm, new RecordingRunner(true), bootBlkid());
    const ctx = context(runner, true);
    await runRestore(ctx, { confirm: 'ask', json: true });
    expect(mutatingCalls(runner)).toEqual([]);
    const plan = printedPlan(ctx);
    expect(plan.steps.slice(0, 2).map((x) => x.argv)).toEqual([
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
    ]);
  });

  it('refuses before the merge: a /boot recorded but gone, and no room for the new snap0', async () => {
    for (const [world, blkid, message] of [
      [
        lvmWorld('inactive'),
        bootBlkid('another-uuid'),
        /the system's \/boot \(file system UUID 0d6f7b39-.*\) is on no disk/,
      ],
      [
        (() => {
          const w = lvmWorld('inactive');
          w.vg.freeExtents = 0;
          w.find('snap0')!.size = 8 * MiB;
          return w;
        })(),
        bootBlkid(),
        /not enough space in VG vgroup for a new snap0/,
      ],
    ] as const) {
      const runner = install(world, new RecordingRunner(false), blkid);
      const ctx = context(runner, false);
      await expect(runRestore(ctx, { confirm: 'yes' })).rejects.toThrow(message);
      expect(mutatingCalls(runner)).toEqual([]);
    }
  });

  it('a VG without a recorded /boot and no zs-boot file system: the plan says so and puts nothing back', async () => {
    const lvm = lvmWorld('inactive', []);
    const runner = install(
      lvm,
      new RecordingRunner(false),
      'DEVNAME=/dev/vdb1\nUUID=pv-uuid\nTYPE=LVM2_member\n',
    );
    runner.on('pvs', { stdout: '{"report":[{"pv":[{"pv_name":"/dev/vdb1","vg_name":"vgroup"}]}]}' });
    const ctx = context(runner, false);
    await runRestore(ctx, { confirm: 'yes', json: true });
    const plan = expectAppliedAsPrinted(ctx, runner, [
      `unmount ${ctx.config.paths.runDir}/restore/snap0 if a failure left it mounted`,
      `unmount ${ctx.config.paths.runDir}/restore/root if a failure left it mounted`,
    ]);
    expect(plan.notes.join('\n')).toContain('no separate /boot');
    expect(plan.checks?.[0]).toBe('there is no separate /boot (nothing to mount or put back)');
    expect(plan.steps.some((s) => s.argv?.[0] === 'rsync')).toBe(false);
    // The root holds /boot and the event log: mounted writable.
    expect(plan.steps.find((s) => s.title.startsWith('mount the restored'))?.argv).toEqual([
      'mount',
      '/dev/vgroup/lv-root',
      `${ctx.config.paths.runDir}/restore/root`,
    ]);
  });
});

describe('restore latest on the running system (merge deferred)', () => {
  it('--dry-run --json: the finishing phase is printed as after the next boot', async () => {
    const lvm = lvmWorld('running');
    const runner = install(lvm, new RecordingRunner(true), bootBlkid());
    const ctx = context(runner, true);
    await runRestore(ctx, { confirm: 'yes', json: true });
    expectDryRun(ctx, runner);
    const plan = printedPlan(ctx);
    expect(plan.steps.map((s) => s.argv?.[0] ?? 'edit')).toEqual([
      'mkdir',
      'mount',
      'umount',
      'vgchange',
      'lvconvert',
      'edit',
    ]);
    expect(plan.later?.map((s) => s.argv?.slice(0, 2) ?? 'edit')).toEqual([
      ['lvm', 'lvpoll'],
      ['rsync', '-a'],
      'edit',
      ['mkdir', '-p'],
      ['rsync', '-a'],
      ['lvcreate', '--snapshot'],
      ['vgchange', '--deltag'],
      ['sync'],
    ]);
  });

  it('applied: only the printed steps run; the finishing phase waits for the next boot', async () => {
    const lvm = lvmWorld('running');
    const runner = install(lvm, new RecordingRunner(false), bootBlkid());
    const ctx = context(runner, false);
    mkdirSync(path.dirname(ctx.config.paths.eventLog), { recursive: true });
    await runRestore(ctx, { confirm: 'yes', json: true });
    expectAppliedAsPrinted(ctx, runner, [
      `unmount ${ctx.config.paths.runDir}/restore/snap0 if a failure left it mounted`,
    ]);
    expect(lvm.find('lv-root')!.attr[0]).toBe('O');
    expect(lvm.vg.tags).toContain(RESTORE_TAG);
    expect(ctx.printed.at(-1)).toMatch(/^the merge is deferred: lv-root is in use/);
  });
});

describe('resume at boot', () => {
  const restoring = [
    `${BOOT_UUID_TAG}${BOOT_UUID}`,
    RESTORE_TAG,
    `${RESTORE_OF_TAG}1763780400.daily.captured`,
  ];

  it('a factory reset mark: the whole reset again, from the wipe', async () => {
    for (const dryRun of [true, false]) {
      // The VG a cut reset left: only its mark matters (the plan starts from the wipe).
      const runner = new RecordingRunner(dryRun).on('vgs', {
        stdout: vgsJson([
          { name: 'vgroup', extentBytes: 4 * MiB, extentCount: 900, freeExtents: 0, tags: [FACTORY_TAG] },
        ]),
      });
      const ctx = context(runner, dryRun);
      expect(await resumeInterrupted(ctx, { confirm: 'countdown', json: true }, factoryProbes)).toBe(
        'factory',
      );
      // The first line is the notice; the plan follows.
      ctx.printed.shift();
      if (dryRun) expectDryRun(ctx, runner);
      else
        expectAppliedAsPrinted(ctx, runner, [
          `unmount ${ctx.config.paths.runDir}/boot if a failure left it mounted`,
        ]);
      expect(printedPlan(ctx).steps[0]?.argv).toEqual(['wipefs', '-a', '-q', '/dev/vdb']);
    }
  });

  it('an off-box restore mark: the off-box restore again from the golden medium; from the restored root, only a notice', async () => {
    for (const root of ['active', 'running'] as const) {
      const lvm = lvmWorld(root, [`${BOOT_UUID_TAG}${BOOT_UUID}`, OFFBOX_RESTORE_TAG]);
      const runner = install(lvm, new RecordingRunner(false), bootBlkid());
      const ctx = context(runner, false);
      let ranAgain = 0;
      const acted = await resumeInterrupted(ctx, { confirm: 'countdown' }, factoryProbes, async () => {
        ranAgain += 1;
      });
      if (root === 'active') {
        expect(acted).toBe('offbox');
        expect(ranAgain).toBe(1);
        expect(ctx.printed).toEqual([
          'zshield: an off-box restore was interrupted (power cut?): running it again',
        ]);
      } else {
        // The system runs from the disk the restore would rewrite: nothing is run, nothing written.
        expect(acted).toBe('none');
        expect(ranAgain).toBe(0);
        expect(ctx.printed[0]).toMatch(/this system runs from it: boot the golden medium to run it again$/);
        expect(runner.calls.filter((c) => c.mutates)).toEqual([]);
      }
    }
    // A build without the off-box restore refuses rather than leave the mark unexplained.
    const lvm = lvmWorld('active', [OFFBOX_RESTORE_TAG]);
    const ctx = context(install(lvm, new RecordingRunner(false), bootBlkid()), false);
    await expect(resumeInterrupted(ctx, { confirm: 'countdown' })).rejects.toThrow(
      /an off-box restore of vgroup was interrupted, and this build cannot run it again/,
    );
  });

  const cases: { name: string; world: RootState; first: string[][]; skipped: string[] }[] = [
    {
      name: 'cut before the merge started (from the golden medium)',
      world: 'inactive',
      first: [
        ['vgchange', '-ay', 'vgroup'],
        ['lvconvert', '--merge', '-i', '1', 'vgroup/snap0'],
      ],
      skipped: ['put back the /boot of the restored root (kernel matching its modules)'],
    },
    {
      name: 'cut during the merge (the kernel resumes it at activation)',
      world: 'merging',
      first: [
        ['vgchange', '-ay', 'vgroup'],
        ['lvm', 'lvpoll', '--polloperation', 'merge', '-i', '1', 'vgroup/lv-root'],
      ],
      skipped: ['put back the /boot of the restored root (kernel matching its modules)'],
    },
    {
      name: 'cut after the merge finished',
      world: 'merged',
      first: [['vgchange', '-ay', 'vgroup']],
      skipped: ['put back the /boot of the restored root (kernel matching its modules)'],
    },
  ];
  for (const c of cases) {
    it(`a restore mark, ${c.name}: dry run reads only; applied runs exactly the printed plan`, async () => {
      for (const dryRun of [true, false]) {
        const lvm = lvmWorld(c.world, restoring);
        if (c.world === 'merged')
          for (const l of lvm.lvs) l.attr = `${l.attr.slice(0, 4)}-${l.attr.slice(5)}`;
        const runner = install(lvm, new RecordingRunner(dryRun), bootBlkid());
        const ctx = context(runner, dryRun);
        expect(await resumeInterrupted(ctx, { confirm: 'countdown', json: true })).toBe('restore');
        expect(ctx.printed.shift()).toBe(
          `zshield: a restore was interrupted or deferred: ${dryRun ? 'the plan to finish it (dry run)' : 'finishing it'}`,
        );
        const run = ctx.config.paths.runDir;
        if (dryRun) {
          expectDryRun(ctx, runner);
          continue;
        }
        const plan = expectAppliedAsPrinted(ctx, runner, [
          ...c.skipped,
          `unmount ${run}/restore/boot if a failure left it mounted`,
          `unmount ${run}/restore/root if a failure left it mounted`,
        ]);
        expect(plan.steps.slice(0, c.first.length).map((s) => s.argv)).toEqual(c.first);
        expect(plan.steps[c.first.length]?.argv?.[0]).toBe('mkdir');
        expect(lvm.vg.tags).toEqual([`${BOOT_UUID_TAG}${BOOT_UUID}`]);
        expect(lvm.find('snap0')?.tags).toContain('zshield_reason=post-restore');
      }
    });
  }

  it('a restore mark whose merge never started, on the running root: started now, finished after the reboot', async () => {
    const lvm = lvmWorld('running', restoring);
    const runner = install(lvm, new RecordingRunner(false), bootBlkid());
    const ctx = context(runner, false);
    await resumeInterrupted(ctx, { confirm: 'countdown', json: true });
    ctx.printed.shift();
    const plan = expectAppliedAsPrinted(ctx, runner, []);
    expect(plan.steps.map((s) => s.argv)).toEqual([['lvconvert', '--merge', '-i', '1', 'vgroup/snap0']]);
    expect(plan.later?.[0]?.argv?.slice(0, 2)).toEqual(['lvm', 'lvpoll']);
    expect(ctx.printed.at(-1)).toBe('zshield: the merge of snap0 starts at the next boot: rebooting');
    expect(lvm.vg.tags).toContain(RESTORE_TAG);
  });

  it('an image restore mark: handed to image/ (its record gone here: named, refused, nothing run)', async () => {
    const runner = install(
      lvmWorld('active', [`${BOOT_UUID_TAG}${BOOT_UUID}`, 'zshield_image_restore=abcd1234']),
      new RecordingRunner(false),
      bootBlkid(),
    );
    const ctx = context(runner, false);
    await expect(resumeInterrupted(ctx, { confirm: 'countdown' })).rejects.toThrow(NotFoundError);
    expect(ctx.printed).toEqual(['zshield: an image restore was interrupted (power cut?): running it again']);
    expect(mutatingCalls(runner)).toEqual([]);
  });

  it('no mark: nothing to do, nothing run', async () => {
    const runner = install(lvmWorld('active', []), new RecordingRunner(false), bootBlkid());
    const ctx = context(runner, false);
    expect(await resumeInterrupted(ctx, { confirm: 'countdown' })).toBe('none');
    expect(mutatingCalls(runner)).toEqual([]);
  });
});

// A separate /boot as the running system disk has it (a folder on a tmpfs, another file system than
// /): the boot menu's refresh after the restore finds it, and is a plan of its own.
const SEPARATE = '/dev/shm';
const separateBoot = (() => {
  const a = deviceOf(SEPARATE);
  return !!a && (a.major !== here.major || a.minor !== here.minor);
})();

describe.skipIf(!separateBoot)("the boot menu's refresh after a restore (a nested plan)", () => {
  function withBoot(runner: RecordingRunner, dryRun: boolean) {
    const ctx = context(runner, dryRun);
    const boot = mkdtempSync(path.join(SEPARATE, 'zshield-unit-boot-'));
    cleanups.push(() => rmSync(boot, { recursive: true, force: true }));
    ctx.config.boot.dir = boot;
    return { ctx, file: path.join(boot, MENU_FILE) };
  }

  it('recover latest --dry-run: the restore, then the refresh, then one "nothing was changed" line; nothing written', async () => {
    const lvm = lvmWorld('running');
    const runner = install(lvm, new RecordingRunner(true), bootBlkid());
    const { ctx, file } = withBoot(runner, true);
    await runRestore(ctx, { confirm: 'yes' });
    expect(ctx.printed).toHaveLength(3);
    expect(ctx.printed[0]).toMatch(/^Restore vgroup\/lv-root from snap0\n/);
    expect(ctx.printed[1]).toMatch(/^Refresh the boot menu's restore point \(vgroup\)\n/);
    expect(ctx.printed[2]).toBe(DRY_RUN_DONE);
    expect(mutatingCalls(runner)).toEqual([]);
    expect(existsSync(file)).toBe(false);
  });

  it('a resumed restore (mark left by a power cut) refreshes the menu after it; its dry run shows that and writes nothing', async () => {
    const restoring = [
      `${BOOT_UUID_TAG}${BOOT_UUID}`,
      RESTORE_TAG,
      `${RESTORE_OF_TAG}1763780400.daily.captured`,
    ];
    for (const dryRun of [true, false]) {
      const lvm = lvmWorld('merged', restoring);
      const runner = install(lvm, new RecordingRunner(dryRun), bootBlkid());
      const { ctx, file } = withBoot(runner, dryRun);
      expect(await resumeInterrupted(ctx, { confirm: 'countdown' })).toBe('restore');
      if (dryRun) {
        expect(ctx.printed.slice(2)).toEqual([
          expect.stringMatching(/^Refresh the boot menu's restore point \(vgroup\)\n/),
          DRY_RUN_DONE,
        ]);
        expect(existsSync(file)).toBe(false);
        continue;
      }
      // The new snap0 the finishing phase took is what the menu offers.
      expect(readFileSync(file, 'utf8')).toMatch(
        /^# GRUB Environment Block\nzshield_restore_point=.*, post-restore\n/,
      );
    }
  });
});

describe('golden prepare', () => {
  const probes: GoldenProbes = {
    disks: async () => ({
      disks: [disk('vda', 'ZS-GOLDEN-CF', 2), disk('vdb', 'ZS-SYSTEM-HDD', 8)],
      bootDisks: ['vdb'],
    }),
    prototype: async () => prototypeFacts({ init: 'rc.local', usedBytes: 700 * MiB }),
  };

  it('--dry-run --json prints the plan with its checks; applied runs exactly the printed commands', async () => {
    const dry = new RecordingRunner(true);
    const dctx = context(dry, true);
    await runGoldenPrepare(dctx, { confirm: 'yes', json: true, target: 'ZS-GOLDEN-CF' }, probes);
    expectDryRun(dctx, dry);
    expect(printedPlan(dctx).checks).toEqual(['the medium /dev/vda has room for 700 MiB']);

    const runner = new RecordingRunner(false);
    const ctx = context(runner, false);
    await runGoldenPrepare(ctx, { confirm: 'yes', json: true, target: 'ZS-GOLDEN-CF' }, probes);
    const mnt = `${ctx.config.paths.runDir}/golden`;
    const plan = expectAppliedAsPrinted(
      ctx,
      runner,
      [`${mnt}/dev`, `${mnt}/sys`, `${mnt}/proc`, mnt].map(
        (d) => `unmount ${d} if a failure left it mounted`,
      ),
    );
    expect(plan.steps[0]?.argv).toEqual(['wipefs', '-a', '-q', '/dev/vda']);
    expect(ctx.printed.at(-1)).toBe('golden medium written');
  });

  it('refuses a medium too small for the prototype before anything is written', async () => {
    const runner = new RecordingRunner(false);
    const ctx = context(runner, false);
    const small: GoldenProbes = {
      ...probes,
      prototype: async () => ({ ...(await probes.prototype(ctx)), usedBytes: 3 * GiB }),
    };
    await expect(runGoldenPrepare(ctx, { confirm: 'yes', target: 'ZS-GOLDEN-CF' }, small)).rejects.toThrow(
      /the medium \/dev\/vda is too small: 2.0 GiB for 3.0 GiB in use/,
    );
    expect(mutatingCalls(runner)).toEqual([]);
    expect(existsSync(ctx.config.paths.runDir)).toBe(false);
  });
});
