import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import { defaultConfig } from '../../src/config/schema.js';
import { NotFoundError, RefusedError } from '../../src/errors.js';
import { type CommandStep, formatPlan, type Plan, planToJson } from '../../src/plan/plan.js';
import { labelOf, planRepair, planRotation } from '../../src/restore-point/rotation.js';
import { parseLvs, parseVgs, type VgState } from '../../src/system/lvm.js';
import { EXTENT, epoch, GiB, type LvRow, lvsJson, MiB, vgsJson } from './helpers/lvm-json.js';
import { namesOf } from '../../src/names/snapshots.js';
import type { Reason } from '../../src/names/lvm-tags.js';

const NOW = new Date(2026, 10, 21, 3, 0, 7);
const T = epoch(NOW);

const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB };
const PLAIN_ROOT: LvRow = { name: 'lv-root', attr: '-wi-ao----', size: 10 * GiB };
const DATA: LvRow = { name: 'lv-data', attr: '-wi-ao----', size: 8 * GiB, minor: 1 };
const SNAP: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '41.20',
  tags: ['zshield_reason=daily', 'zshield_time=1763690400'],
  minor: 3,
};
const NEXT: LvRow = {
  ...SNAP,
  name: 'snap0-next',
  snapPercent: '0.01',
  minor: 4,
  tags: ['zshield_reason=manual'],
};

/** A VG state as probeVg would return it: built as LVM's JSON, then parsed. */
function vgState(lvs: LvRow[], freeExtents: number, tags: string[] = []): VgState {
  return {
    vg: parseVgs(
      vgsJson([{ name: 'vgroup', extentBytes: EXTENT, extentCount: 7679, freeExtents, tags }]),
    )[0]!,
    lvs: parseLvs(lvsJson('vgroup', lvs)),
  };
}

function plan(
  state: VgState,
  opts: { edit?: (c: Config) => void; reason?: Reason; rootIsRunning?: boolean } = {},
): Plan<CommandStep> {
  const config = defaultConfig();
  config.paths.stateDir = '/var/lib/zshield';
  opts.edit?.(config);
  return planRotation({
    state,
    config,
    reason: opts.reason ?? 'manual',
    now: NOW,
    rootIsRunning: opts.rootIsRunning ?? false,
  });
}

const argvs = (p: Plan<CommandStep>) => p.steps.map((s) => [s.command.file, ...s.command.args]);
const createArgv = (name: string, bytes: number, reason: string, boot = 'none') => [
  'lvcreate',
  '--snapshot',
  '--name',
  name,
  '--size',
  `${bytes}b`,
  '--addtag',
  `zshield_reason=${reason}`,
  '--addtag',
  `zshield_time=${T}`,
  '--addtag',
  `zshield_boot=${boot}`,
  'vgroup/lv-root',
];

function refusal(fn: () => unknown): RefusedError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RefusedError);
    return err as RefusedError;
  }
  throw new Error('expected a RefusedError');
}

describe('planRotation', () => {
  it('takes no backup of a root half-written by an image restore cut short', () => {
    const err = refusal(() => plan(vgState([PLAIN_ROOT, DATA], 600, ['zshield_image_restore=abcd1234'])));
    expect(err.message).toMatch(/half-written by an image restore that was cut short: no backup is taken/);
  });

  it('takes no backup of a root a factory reset or an off-box restore was filling when it was cut', () => {
    for (const [tag, what] of [
      ['zshield_factory_reset', 'a factory reset'],
      ['zshield_offbox_restore', 'an off-box restore'],
    ]) {
      const err = refusal(() => plan(vgState([PLAIN_ROOT, DATA], 600, [tag!])));
      expect(err.message).toBe(
        `vgroup/lv-root is being filled by ${what} that was cut short: no backup is taken of it`,
      );
    }
  });

  it('first backup: one lvcreate of snap0, labelled with reason and time', () => {
    const p = plan(vgState([PLAIN_ROOT, DATA], 600), { reason: 'factory' });
    expect(argvs(p)).toEqual([createArgv('snap0', 2 * GiB, 'factory')]);
    expect(p.steps[0]?.command.mutates).toBe(true);
    expect(p.title).toBe('Back up vgroup/lv-root to snap0 (reason: factory)');
    expect(p.notes.join('\n')).toContain('there is no snap0 yet: this is the first restore point');
  });

  it('first backup without room is refused, nothing planned', () => {
    const err = refusal(() => plan(vgState([PLAIN_ROOT], 511)));
    expect(err.message).toBe(
      'not enough space in VG vgroup for a new snap0: need 2.0 GiB, 2.0 GiB free; the old snap0 is kept',
    );
  });

  it('create-first when the VG has room for the new one beside the old', () => {
    const p = plan(vgState([ROOT, DATA, SNAP], 512));
    expect(argvs(p)).toEqual([
      ['vgchange', '--addtag', 'zshield_rotating', 'vgroup'],
      createArgv('snap0-next', 2 * GiB, 'manual'),
      ['lvremove', '--yes', 'vgroup/snap0'],
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
    ]);
    expect(p.steps.every((s) => s.command.mutates)).toBe(true);
    expect(p.notes.join('\n')).toContain(
      'the old snap0 (2025-11-21T02:00:00.000Z, daily) is removed only after the new one exists',
    );
  });

  it('remove-first (rotation auto) when only the old one’s space makes room', () => {
    const p = plan(vgState([ROOT, SNAP], 100));
    expect(argvs(p)).toEqual([
      ['vgchange', '--addtag', 'zshield_rotating', 'vgroup'],
      ['lvremove', '--yes', 'vgroup/snap0'],
      createArgv('snap0', 2 * GiB, 'manual'),
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
    ]);
    expect(p.notes.join('\n')).toMatch(
      /removed first, and until the new one exists there is no restore point/,
    );
  });

  it('refuses when even dropping the old one would not make room; the old one is kept', () => {
    const small = { ...SNAP, size: 1 * GiB };
    const err = refusal(() => plan(vgState([ROOT, small], 100)));
    expect(err.message).toContain('the old snap0 is kept');
    expect(err.message).toContain('need 2.0 GiB, 400 MiB free, 1.4 GiB even without the old one');
    expect(err.hint).toMatch(/snapshot\.size/);
  });

  it('rotation create-first refuses rather than drop the old one first', () => {
    const err = refusal(() =>
      plan(vgState([ROOT, SNAP], 100), {
        edit: (c) => {
          c.snapshot.rotation = 'create-first';
        },
      }),
    );
    expect(err.message).toBe(
      'not enough space in VG vgroup for a new snap0: need 2.0 GiB, 400 MiB free; the old snap0 is kept',
    );
  });

  it('an absolute size is rounded up to whole extents', () => {
    const p = plan(vgState([PLAIN_ROOT], 600), {
      edit: (c) => {
        c.snapshot.size = { kind: 'bytes', bytes: 10 * MiB };
      },
    });
    expect(argvs(p)[0]).toEqual(createArgv('snap0', 12 * MiB, 'manual'));
  });

  it('a percentage is of lv-root, rounded up to whole extents', () => {
    const root = { ...PLAIN_ROOT, size: 251 * EXTENT }; // 20% = 50.2 extents
    const p = plan(vgState([root], 600));
    expect(argvs(p)[0]).toEqual(createArgv('snap0', 51 * EXTENT, 'manual'));
    const p5 = plan(vgState([PLAIN_ROOT], 600), {
      edit: (c) => {
        c.snapshot.size = { kind: 'percent', percent: 5 };
      },
    });
    expect(argvs(p5)[0]).toEqual(createArgv('snap0', 512 * MiB, 'manual'));
  });

  it('needs exactly the rounded size: one extent short flips create-first to remove-first', () => {
    expect(argvs(plan(vgState([ROOT, SNAP], 512)))[1]?.[3]).toBe('snap0-next');
    expect(argvs(plan(vgState([ROOT, SNAP], 511)))[1]?.[0]).toBe('lvremove');
  });

  it('refuses while a merge into lv-root is pending', () => {
    const err = refusal(() =>
      plan(
        vgState(
          [
            { ...ROOT, attr: 'Owi-a-s---' },
            { ...SNAP, attr: 'Swi-a-s---' },
          ],
          4000,
        ),
      ),
    );
    expect(err.message).toBe('a merge of a snapshot into vgroup/lv-root is pending');
  });

  it('lv-root missing is a NotFoundError', () => {
    expect(() => plan(vgState([DATA], 4000))).toThrow(NotFoundError);
    expect(() => plan(vgState([DATA], 4000))).toThrow('logical volume "vgroup/lv-root" not found');
  });

  it('refuses to touch a snap0 that is not a snapshot', () => {
    const err = refusal(() =>
      plan(vgState([PLAIN_ROOT, { name: 'snap0', attr: '-wi-a-----', size: GiB }], 4000)),
    );
    expect(err.message).toBe('vgroup/snap0 exists but is not a snapshot; zshield will not remove it');
  });

  it('refuses to replace a snap0 that is a snapshot of another LV', () => {
    const data = { ...DATA, attr: 'owi-ao----' };
    const err = refusal(() => plan(vgState([PLAIN_ROOT, data, { ...SNAP, origin: 'lv-data' }], 4000)));
    expect(err.message).toBe('vgroup/snap0 is a snapshot of lv-data, not of lv-root');
  });

  it('refuses while an interrupted rotation awaits repair', () => {
    expect(refusal(() => plan(vgState([ROOT, SNAP, NEXT], 4000))).message).toMatch(/repaired first/);
    expect(refusal(() => plan(vgState([ROOT, SNAP], 4000, ['zshield_rotating']))).message).toMatch(
      /repaired first/,
    );
  });

  it('replaces an invalid snap0 like any other', () => {
    const p = plan(vgState([ROOT, { ...SNAP, attr: 'swi-I-s---', snapPercent: '100.00' }], 4000));
    expect(argvs(p).map((a) => a[0])).toEqual(['vgchange', 'lvcreate', 'lvremove', 'lvrename', 'vgchange']);
  });

  it('captures /boot into lv-root first when lv-root is the running root', () => {
    const p = plan(vgState([PLAIN_ROOT], 600), { rootIsRunning: true, reason: 'daily' });
    expect(argvs(p)).toEqual([
      ['mkdir', '-p', '/var/lib/zshield/boot'],
      ['rsync', '-a', '--delete', '--numeric-ids', '/boot/', '/var/lib/zshield/boot/'],
      createArgv('snap0', 2 * GiB, 'daily', 'captured'),
    ]);
  });

  it('no /boot capture when lv-root is not the running root, or capture is off', () => {
    const notRunning = plan(vgState([PLAIN_ROOT], 600), { rootIsRunning: false });
    expect(argvs(notRunning).map((a) => a[0])).toEqual(['lvcreate']);
    expect(notRunning.notes.join('\n')).toContain('lv-root is not the running root: /boot is not captured');
    const off = plan(vgState([PLAIN_ROOT], 600), {
      rootIsRunning: true,
      edit: (c) => {
        c.boot.capture = false;
      },
    });
    expect(argvs(off)).toEqual([createArgv('snap0', 2 * GiB, 'manual', 'none')]);
  });

  it('honours other names from the config', () => {
    const config = defaultConfig();
    config.lvm = { vg: 'vgroup', rootLv: 'root', snapshot: 'restore' };
    const state = vgState(
      [
        { ...PLAIN_ROOT, name: 'root' },
        { ...SNAP, name: 'restore', origin: 'root' },
      ],
      4000,
    );
    const p = planRotation({ state, config, reason: 'daily', now: NOW, rootIsRunning: false });
    expect(argvs(p).map((a) => a.at(-1))).toEqual([
      'vgroup',
      'vgroup/root',
      'vgroup/restore',
      'restore',
      'vgroup',
    ]);
    expect(namesOf(config).next).toBe('restore-next');
  });
});

describe('planRepair (a rotation cut short)', () => {
  const names = namesOf(defaultConfig());
  const repair = (lvs: LvRow[], tags: string[] = ['zshield_rotating']) =>
    planRepair(vgState(lvs, 100, tags), names);

  it('nothing to repair: null', () => {
    expect(repair([ROOT, SNAP], [])).toBeNull();
  });

  it('new made, old still there: drop the old, rename the new, clear the mark', () => {
    const p = repair([ROOT, SNAP, NEXT])!;
    expect(argvs(p)).toEqual([
      ['lvremove', '--yes', 'vgroup/snap0'],
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
    ]);
    expect(p.notes).toContain('snap0-next was completed; it becomes snap0');
  });

  it('new made, old already dropped: rename and clear', () => {
    expect(argvs(repair([ROOT, NEXT])!)).toEqual([
      ['lvrename', 'vgroup', 'snap0-next', 'snap0'],
      ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
    ]);
  });

  it.each(['swi-I-s---', 'swi-S-s---'])(
    'an invalid new one (%s) is discarded and the old one kept',
    (attr) => {
      const p = repair([ROOT, SNAP, { ...NEXT, attr, snapPercent: '100.00' }])!;
      expect(argvs(p)).toEqual([
        ['lvremove', '--yes', 'vgroup/snap0-next'],
        ['vgchange', '--deltag', 'zshield_rotating', 'vgroup'],
      ]);
      expect(p.notes).toContain('snap0-next is not a usable snapshot of lv-root; it is discarded');
    },
  );

  it('a next that is not a snapshot of lv-root is discarded', () => {
    const data = { ...DATA, attr: 'owi-ao----' };
    expect(argvs(repair([ROOT, data, SNAP, { ...NEXT, origin: 'lv-data' }])!)[0]).toEqual([
      'lvremove',
      '--yes',
      'vgroup/snap0-next',
    ]);
  });

  it('only the mark left: clear it', () => {
    expect(argvs(repair([ROOT, SNAP])!)).toEqual([['vgchange', '--deltag', 'zshield_rotating', 'vgroup']]);
    expect(argvs(repair([PLAIN_ROOT])!)).toEqual([['vgchange', '--deltag', 'zshield_rotating', 'vgroup']]);
  });

  it('a next without the mark (tag lost) is still finished', () => {
    expect(argvs(repair([ROOT, SNAP, NEXT], [])!).map((a) => a[0])).toEqual(['lvremove', 'lvrename']);
  });
});

describe('labels and plan output', () => {
  it('labelOf reads reason and time tags, falling back to lv_time', () => {
    const [tagged, bare] = parseLvs(
      lvsJson('vgroup', [
        { ...SNAP, time: 1700000000 },
        { ...SNAP, name: 'x', tags: [], time: 1700000000 },
      ]),
    );
    expect(labelOf(tagged!)).toEqual({ reason: 'daily', time: new Date(1763690400 * 1000) });
    expect(labelOf(bare!)).toEqual({ reason: null, time: new Date(1700000000 * 1000) });
  });

  it('the preview is made from the very steps that run', () => {
    const p = plan(vgState([ROOT, SNAP], 512));
    const text = formatPlan(p);
    const lines = text.split('\n');
    expect(lines[0]).toBe(p.title);
    expect(lines).toContain('  1. mark the rotation as started');
    expect(lines).toContain('     $ vgchange --addtag zshield_rotating vgroup');
    expect(lines).toContain('     $ lvrename vgroup snap0-next snap0');
    expect(lines.filter((l) => l.startsWith('     $ '))).toHaveLength(p.steps.length);
    expect(planToJson(p)).toMatchObject({
      steps: p.steps.map((s) => ({ mutates: true, argv: [s.command.file, ...s.command.args] })),
    });
    expect(formatPlan({ title: 'Nothing', notes: [], steps: [] })).toBe('Nothing\n  No changes.');
  });
});

describe('snapshot size cap', () => {
  it('plans with what LVM really allocates: never more than the origin plus its exception table', () => {
    // 10 GiB origin: at most 10 GiB + 16 bytes per 4 KiB chunk + one chunk, rounded up to 4 MiB extents.
    const p = plan(vgState([PLAIN_ROOT], 7679 - 2560), {
      edit: (c) => {
        c.snapshot.size = { kind: 'bytes', bytes: 30 * GiB };
      },
    });
    const size = p.steps.at(-1)!.command.args[p.steps.at(-1)!.command.args.indexOf('--size') + 1];
    expect(size).toBe(`${10 * GiB + 40 * MiB + 4 * MiB}b`);
  });
});
