import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { namesOf } from '../../src/names/snapshots.js';
import { describeCutRotation, stateAfterRepair } from '../../src/restore-point/repair.js';
import { planRepair } from '../../src/restore-point/rotation.js';
import type { LvInfo, VgState } from '../../src/system/lvm.js';

const names = namesOf(defaultConfig());
const lv = (name: string, over: Partial<LvInfo> = {}): LvInfo => ({
  name,
  vg: 'vgroup',
  path: `/dev/vgroup/${name}`,
  attr: name === 'lv-root' ? 'owi-a-s---' : 'swi-a-s---',
  sizeBytes: 1 << 30,
  kind: name === 'lv-root' ? 'origin' : 'snapshot',
  origin: name === 'lv-root' ? null : 'lv-root',
  merging: false,
  invalid: false,
  active: true,
  snapPercent: name === 'lv-root' ? null : 1,
  tags: name === 'snap0' ? ['zshield_reason=daily'] : name === 'snap0-next' ? ['zshield_reason=manual'] : [],
  created: null,
  kernelMajor: null,
  kernelMinor: null,
  ...over,
});
const vg = (tags: string[], ...lvs: LvInfo[]): VgState => ({
  vg: {
    name: 'vgroup',
    sizeBytes: 8 << 30,
    freeBytes: 1 << 30,
    extentBytes: 4 << 20,
    freeExtents: 256,
    tags,
  },
  lvs,
});
const MARK = 'zshield_rotating';
const restorePoint = (s: VgState) => stateAfterRepair(s, names).lvs.find((l) => l.name === 'snap0');

// The create-first rotation is: mark, lvcreate snap0-next, lvremove snap0, lvrename, unmark. A
// power cut before each command leaves one of these states; the newest complete snapshot must be
// the restore point in every one, for the writers' repair and the readers' view alike.
describe('a rotation cut short never hides a complete restore point', () => {
  it('cut before lvcreate: the old snap0 stays the restore point, the mark is cleared', () => {
    const s = vg([MARK], lv('lv-root'), lv('snap0'));
    expect(restorePoint(s)?.tags).toEqual(['zshield_reason=daily']);
    expect(stateAfterRepair(s, names).vg.tags).toEqual([]);
    expect(describeCutRotation(s, names)).toMatch(/keeps snap0 as it is/);
  });

  it('cut after lvcreate, before lvremove: the newer complete snap0-next becomes the restore point', () => {
    const s = vg([MARK], lv('lv-root'), lv('snap0'), lv('snap0-next'));
    expect(restorePoint(s)?.tags).toEqual(['zshield_reason=manual']);
    expect(stateAfterRepair(s, names).lvs.map((l) => l.name)).toEqual(['lv-root', 'snap0']);
    expect(planRepair(s, names)!.steps.map((x) => x.title)).toEqual([
      'remove the old snap0',
      'rename snap0-next to snap0',
      'clear the rotation mark',
    ]);
  });

  it('cut after lvremove, before lvrename: snap0-next is the restore point (never "no backup")', () => {
    const s = vg([MARK], lv('lv-root'), lv('snap0-next'));
    expect(restorePoint(s)?.tags).toEqual(['zshield_reason=manual']);
    expect(describeCutRotation(s, names)).toMatch(/completed snap0-next the restore point/);
  });

  it('cut after lvrename, before unmark: snap0 as it is, the mark cleared', () => {
    const s = vg([MARK], lv('lv-root'), lv('snap0', { tags: ['zshield_reason=manual'] }));
    expect(restorePoint(s)?.tags).toEqual(['zshield_reason=manual']);
    expect(planRepair(s, names)!.steps.map((x) => x.title)).toEqual(['clear the rotation mark']);
  });

  it('cut in the middle of lvcreate (an invalid snap0-next): discarded, the old snap0 kept', () => {
    const s = vg([MARK], lv('lv-root'), lv('snap0'), lv('snap0-next', { invalid: true }));
    expect(restorePoint(s)?.tags).toEqual(['zshield_reason=daily']);
    expect(stateAfterRepair(s, names).lvs.map((l) => l.name)).toEqual(['lv-root', 'snap0']);
  });

  it('a drop-first rotation cut after lvremove: the plan names that no restore point is left', () => {
    const s = vg([MARK], lv('lv-root'));
    expect(restorePoint(s)).toBeUndefined();
    expect(planRepair(s, names)!.notes.join('\n')).toMatch(
      /no restore point is left.*a backup is taken next/,
    );
    expect(describeCutRotation(s, names)).toMatch(/left no restore point/);
  });

  it('nothing cut: the state as it is, no note', () => {
    const s = vg([], lv('lv-root'), lv('snap0'));
    expect(stateAfterRepair(s, names)).toBe(s);
    expect(describeCutRotation(s, names)).toBeNull();
  });
});
