import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { snapshotHealth } from '../../src/restore-point/health.js';
import { parseLvs } from '../../src/system/lvm.js';
import { GiB, type LvRow, lvsJson } from './helpers/lvm-json.js';

const config = defaultConfig();
const snap = (over: Partial<LvRow>) =>
  parseLvs(
    lvsJson('vgroup', [
      { name: 'snap0', attr: 'swi-a-s---', size: 2 * GiB, origin: 'lv-root', snapPercent: '10.00', ...over },
    ]),
  )[0]!;

describe('snapshotHealth', () => {
  it.each([
    ['0.00', 'ok'],
    ['79.99', 'ok'],
    ['80.00', 'warn'],
    ['94.99', 'warn'],
    ['95.00', 'error'],
    ['99.90', 'error'],
  ])('fill %s%% is %s (thresholds 80/95)', (pct, level) => {
    const h = snapshotHealth(snap({ snapPercent: pct }), config);
    expect(h.level).toBe(level);
    expect(h.message).toContain(`vgroup/snap0 is ${Number(pct).toFixed(1)}% full`);
  });

  it('warn and error say what to do', () => {
    expect(snapshotHealth(snap({ snapPercent: '85.00' }), config).message).toBe(
      'vgroup/snap0 is 85.0% full: grow it (lvextend -L +1G vgroup/snap0) or take a new backup (zshield backup) before it overflows',
    );
    expect(snapshotHealth(snap({ snapPercent: '96.00' }), config).message).toMatch(
      /becomes invalid at 100%: .* now$/,
    );
  });

  it('follows the configured thresholds', () => {
    const c = defaultConfig();
    c.snapshot.warnPercent = 50;
    c.snapshot.errorPercent = 60;
    expect(snapshotHealth(snap({ snapPercent: '49.00' }), c).level).toBe('ok');
    expect(snapshotHealth(snap({ snapPercent: '50.00' }), c).level).toBe('warn');
    expect(snapshotHealth(snap({ snapPercent: '60.00' }), c).level).toBe('error');
  });

  it('an invalid (overflowed) snapshot is an error, whatever its fill', () => {
    const h = snapshotHealth(snap({ attr: 'swi-I-s---', snapPercent: '100.00' }), config);
    expect(h.level).toBe('error');
    expect(h.message).toMatch(/^vgroup\/snap0 is INVALID \(it overflowed\): it cannot be restored/);
  });

  it('no snapshot: an error pointing at `zshield backup`', () => {
    expect(snapshotHealth(undefined, config)).toEqual({
      level: 'error',
      message: 'no restore point: vgroup/snap0 does not exist; run `zshield backup`',
    });
  });

  it('a merging snapshot is a warning about the pending restore', () => {
    expect(snapshotHealth(snap({ attr: 'Swi-a-s---', snapPercent: '3.10' }), config)).toEqual({
      level: 'warn',
      message: 'vgroup/snap0 is being merged into lv-root (a restore is pending)',
    });
  });

  it('an inactive snapshot has an unknown fill: a warning', () => {
    const h = snapshotHealth(snap({ attr: 'swi---s---', snapPercent: '' }), config);
    expect(h).toEqual({ level: 'warn', message: 'vgroup/snap0 is not active: its fill level is unknown' });
  });

  it('a snap0 that is not a snapshot is an error', () => {
    expect(snapshotHealth(snap({ attr: '-wi-a-----', origin: '', snapPercent: '' }), config)).toEqual({
      level: 'error',
      message: 'vgroup/snap0 is not a snapshot',
    });
  });
});
