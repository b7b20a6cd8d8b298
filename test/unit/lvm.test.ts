import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/errors.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import {
  decodeLvAttr,
  LV_ATTR,
  lvCreateArgv,
  lvCreateWipedArgv,
  lvMergeArgv,
  lvmCommand,
  pvCreateArgv,
  snapshotArgv,
  vgActivateArgv,
  vgCreateArgv,
  vgDeactivateArgv,
  vgTagsArgv,
  withLvAttr,
  type LvInfo,
  lvsCommand,
  parseLvs,
  parseVgs,
  probeVg,
  snapshotCreateCommand,
  vgsCommand,
} from '../../src/system/lvm.js';
import { tagValue } from '../../src/names/lvm-tags.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');
const byName = (lvs: LvInfo[], name: string) => {
  const lv = lvs.find((l) => l.name === name);
  if (!lv) throw new Error(`fixture has no LV ${name}`);
  return lv;
};

describe('probe commands', () => {
  it('asks for JSON in bytes, without suffixes, with epoch times', () => {
    expect([lvsCommand('vgroup').file, ...lvsCommand('vgroup').args]).toEqual([
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
    ]);
    expect([vgsCommand('vgroup').file, ...vgsCommand('vgroup').args]).toEqual([
      'vgs',
      '--reportformat',
      'json',
      '--units',
      'b',
      '--nosuffix',
      '-o',
      'vg_name,vg_size,vg_free,vg_extent_size,vg_free_count,vg_tags',
      'vgroup',
    ]);
    expect(lvsCommand().mutates).toBe(false);
    expect(vgsCommand().mutates).toBe(false);
  });

  it('creates the snapshot with a byte size and one --addtag per tag', () => {
    const cmd = snapshotCreateCommand({
      vg: 'vgroup',
      origin: 'lv-root',
      name: 'snap0',
      sizeBytes: 2147483648,
      tags: ['zshield_reason=daily', 'zshield_time=1763690400'],
    });
    expect(cmd.mutates).toBe(true);
    expect([cmd.file, ...cmd.args]).toEqual([
      'lvcreate',
      '--snapshot',
      '--name',
      'snap0',
      '--size',
      '2147483648b',
      '--addtag',
      'zshield_reason=daily',
      '--addtag',
      'zshield_time=1763690400',
      'vgroup/lv-root',
    ]);
  });
});

describe('parseLvs (LVM 2.03 JSON)', () => {
  const lvs = parseLvs(fixture('lvs-snapshot.json'));

  it('reads every row', () => {
    expect(lvs.map((l) => l.name)).toEqual(['lv-audit', 'lv-data', 'lv-root', 'snap0']);
  });

  it('an origin with a snapshot (owi-aos---)', () => {
    expect(byName(lvs, 'lv-root')).toEqual({
      name: 'lv-root',
      vg: 'vgroup',
      path: '/dev/vgroup/lv-root',
      attr: 'owi-aos---',
      sizeBytes: 10737418240,
      kind: 'origin',
      origin: null,
      merging: false,
      invalid: false,
      active: true,
      snapPercent: null,
      tags: [],
      created: new Date(1763604000 * 1000),
      kernelMajor: 253,
      kernelMinor: 0,
    } satisfies LvInfo);
  });

  it('a healthy snapshot (swi-a-s---) with its fill level, origin and tags', () => {
    const snap = byName(lvs, 'snap0');
    expect(snap.kind).toBe('snapshot');
    expect(snap.origin).toBe('lv-root');
    expect(snap.snapPercent).toBe(12.5);
    expect(snap.active).toBe(true);
    expect(snap.invalid).toBe(false);
    expect(snap.merging).toBe(false);
    expect(snap.sizeBytes).toBe(2147483648);
    expect(snap.tags).toEqual(['zshield_boot=captured', 'zshield_reason=daily', 'zshield_time=1763690400']);
    expect(tagValue(snap.tags, 'zshield_reason=')).toBe('daily');
    expect(tagValue(snap.tags, 'zshield_time=')).toBe('1763690400');
    expect(tagValue(snap.tags, 'zshield_nope=')).toBeNull();
    expect(snap.created?.toISOString()).toBe('2025-11-21T02:00:01.000Z');
  });

  it('an inactive LV: kernel numbers -1 become null, no fill level', () => {
    const audit = byName(lvs, 'lv-audit');
    expect(audit.kind).toBe('plain');
    expect(audit.active).toBe(false);
    expect(audit.kernelMajor).toBeNull();
    expect(audit.kernelMinor).toBeNull();
    expect(audit.snapPercent).toBeNull();
  });

  it('a plain open LV (-wi-ao----)', () => {
    const data = byName(lvs, 'lv-data');
    expect(data).toMatchObject({
      kind: 'plain',
      active: true,
      merging: false,
      kernelMajor: 253,
      kernelMinor: 1,
    });
  });

  it('an invalidated snapshot (swi-I-s---)', () => {
    const snap = byName(parseLvs(fixture('lvs-invalid.json')), 'snap0');
    expect(snap).toMatchObject({
      kind: 'snapshot',
      invalid: true,
      active: false,
      merging: false,
      snapPercent: 100,
    });
  });

  it('an invalidated snapshot that is also suspended (swi-S-s---) is invalid too', () => {
    const [snap] = parseLvs(
      '{"report":[{"lv":[{"lv_name":"snap0","vg_name":"vgroup","lv_attr":"swi-S-s---","lv_size":"4194304","origin":"lv-root","snap_percent":"100.00"}]}]}',
    );
    expect(snap).toMatchObject({ kind: 'snapshot', invalid: true, active: false });
  });

  it('a merge in progress: Swi-a-s--- snapshot and Owi-a-s--- origin; a "log" section is ignored', () => {
    const merging = parseLvs(fixture('lvs-merging.json'));
    expect(merging).toHaveLength(2);
    expect(byName(merging, 'snap0')).toMatchObject({
      kind: 'snapshot',
      merging: true,
      invalid: false,
      active: true,
    });
    expect(byName(merging, 'lv-root')).toMatchObject({ kind: 'origin', merging: true, active: true });
  });

  it('several report objects are joined; an empty VG gives no LVs', () => {
    const two = `{"report":[{"lv":[{"lv_name":"a","vg_name":"x","lv_attr":"-wi-a-----","lv_size":"4194304"}]},{"lv":[{"lv_name":"b","vg_name":"y","lv_attr":"-wi-a-----","lv_size":"8388608"}]}]}`;
    expect(parseLvs(two).map((l) => `${l.vg}/${l.name}`)).toEqual(['x/a', 'y/b']);
    expect(parseLvs('{"report":[{"lv":[]}]}')).toEqual([]);
  });

  it('a time printed as a date (no time_format override) is still read', () => {
    const row = `{"report":[{"lv":[{"lv_name":"a","vg_name":"x","lv_attr":"-wi-a-----","lv_size":"1","lv_time":"2025-11-21 02:00:01 +0000"}]}]}`;
    expect(parseLvs(row)[0]?.created?.toISOString()).toBe('2025-11-21T02:00:01.000Z');
  });

  it('rejects output that is not an LVM report', () => {
    expect(() => parseLvs('  WARNING: something\n')).toThrow(/unparseable LVM report/);
    expect(() => parseLvs('{"lv":[]}')).toThrow(/without "report"/);
  });
});

describe('parseVgs', () => {
  it('reads sizes in bytes, extents and tags', () => {
    expect(parseVgs(fixture('vgs.json'))).toEqual([
      {
        name: 'vgroup',
        sizeBytes: 32208060416,
        freeBytes: 10733223936,
        extentBytes: 4194304,
        freeExtents: 2559,
        tags: [],
      },
    ]);
  });

  it('reads several VGs and comma-separated tags', () => {
    const vgs = parseVgs(fixture('vgs-two.json'));
    expect(vgs.map((v) => v.name)).toEqual(['data', 'vgroup']);
    expect(vgs[1]?.tags).toEqual(['site=lab', 'zshield_rotating']);
    expect(vgs[0]).toMatchObject({ freeBytes: 0, freeExtents: 0, extentBytes: 33554432 });
  });
});

describe('probeVg', () => {
  it('runs vgs then lvs for the VG and keeps only that VG', async () => {
    const runner = new RecordingRunner().on('vgs', { stdout: fixture('vgs-two.json') }).on('lvs', {
      stdout: `{"report":[{"lv":[{"lv_name":"lv-root","vg_name":"vgroup","lv_attr":"-wi-ao----","lv_size":"4194304"},{"lv_name":"other","vg_name":"data","lv_attr":"-wi-ao----","lv_size":"4194304"}]}]}`,
    });
    const state = await probeVg(runner, 'vgroup');
    expect(state.vg.name).toBe('vgroup');
    expect(state.lvs.map((l) => l.name)).toEqual(['lv-root']);
    expect(runner.calls.map((c) => c.argv[0])).toEqual(['vgs', 'lvs']);
    expect(runner.calls.every((c) => !c.mutates && c.argv.at(-1) === 'vgroup')).toBe(true);
  });

  it('a VG that vgs does not know is a NotFoundError, not an empty answer', async () => {
    const runner = new RecordingRunner().on('vgs', {
      exitCode: 5,
      stderr: '  Volume group "vgroup" not found\n  Cannot process volume group vgroup\n',
    });
    const err = await probeVg(runner, 'vgroup').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toBe('volume group "vgroup" not found');
    expect(runner.calls).toHaveLength(1);
  });

  it('a VG missing from a successful report is a NotFoundError too', async () => {
    const runner = new RecordingRunner().on('vgs', { stdout: '{"report":[{"vg":[]}]}' });
    await expect(probeVg(runner, 'vgroup')).rejects.toBeInstanceOf(NotFoundError);
  });
});

// Outputs captured from the real appliance guest (added by hand; see fixtures/real/README.md).
// Each one must parse completely and agree with itself; with no captures here, only the
// directory's presence is checked.
describe('real captured LVM reports', () => {
  const dir = path.join(FIXTURES, 'real');
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.json') && !f.endsWith('.expect.json'))
        .sort()
    : [];

  it('the capture directory exists and holds only reports and expectations', () => {
    expect(existsSync(dir)).toBe(true);
    for (const f of readdirSync(dir)) expect(f).toMatch(/(\.json|README\.md)$/);
  });

  for (const file of files) {
    it(`${file} parses completely`, () => {
      const text = readFileSync(path.join(dir, file), 'utf8');
      const report = (JSON.parse(text) as { report: Record<string, unknown>[] }).report;
      expect(Array.isArray(report)).toBe(true);
      const isLv = report.some((r) => 'lv' in r);
      const isVg = report.some((r) => 'vg' in r);
      expect(isLv || isVg, 'an lv or vg report').toBe(true);
      const parsed: unknown[] = [];
      if (isLv) {
        const lvs = parseLvs(text);
        for (const lv of lvs) checkLv(lv, lvs);
        parsed.push(...lvs);
      }
      if (isVg) {
        const vgs = parseVgs(text);
        expect(vgs.length).toBeGreaterThan(0);
        for (const vg of vgs) {
          expect(vg.name).toMatch(/^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/);
          for (const n of [vg.sizeBytes, vg.freeBytes, vg.extentBytes, vg.freeExtents]) {
            expect(Number.isSafeInteger(n) && n >= 0, `${vg.name}: whole numbers`).toBe(true);
          }
          expect(vg.extentBytes).toBeGreaterThan(0);
          expect(vg.freeBytes).toBe(vg.freeExtents * vg.extentBytes);
          expect(vg.sizeBytes % vg.extentBytes).toBe(0);
          expect(vg.freeBytes).toBeLessThanOrEqual(vg.sizeBytes);
        }
        parsed.push(...vgs);
      }
      const expectFile = path.join(dir, file.replace(/\.json$/, '.expect.json'));
      if (existsSync(expectFile)) {
        expect(JSON.parse(JSON.stringify(parsed))).toEqual(JSON.parse(readFileSync(expectFile, 'utf8')));
      }
    });
  }
});

function checkLv(lv: LvInfo, all: LvInfo[]): void {
  const where = `${lv.vg}/${lv.name} (${lv.attr})`;
  expect(lv.name, where).not.toBe('');
  expect(lv.vg, where).not.toBe('');
  expect(lv.path, where).toBe(`/dev/${lv.vg}/${lv.name}`);
  expect(lv.attr, where).toMatch(/^.{10}$/);
  expect(Number.isSafeInteger(lv.sizeBytes) && lv.sizeBytes > 0, `${where}: size in whole bytes`).toBe(true);
  expect(lv.kind, where).toBe(
    /[sS]/.test(lv.attr[0]!) ? 'snapshot' : /[oO]/.test(lv.attr[0]!) ? 'origin' : 'plain',
  );
  expect(lv.merging, where).toBe(/[SO]/.test(lv.attr[0]!));
  expect(lv.active, where).toBe(lv.attr[4] === 'a');
  expect(lv.invalid, where).toBe(/[IS]/.test(lv.attr[4]!));
  expect(lv.created === null || !Number.isNaN(lv.created.getTime()), `${where}: lv_time`).toBe(true);
  if (lv.active) {
    expect(lv.kernelMajor, where).not.toBeNull();
    expect(lv.kernelMinor, where).not.toBeNull();
  }
  if (lv.attr[4] === '-') expect(lv.kernelMajor, where).toBeNull();
  if (lv.kind === 'snapshot') {
    expect(lv.origin, `${where}: names its origin`).not.toBeNull();
    const origin = all.find((o) => o.name === lv.origin && o.vg === lv.vg);
    if (origin) expect(origin.kind, `${where}: its origin`).toBe('origin');
    if (lv.snapPercent !== null) {
      expect(lv.snapPercent, where).toBeGreaterThanOrEqual(0);
      expect(lv.snapPercent, where).toBeLessThanOrEqual(100);
    }
    if (lv.active) expect(lv.snapPercent, `${where}: an active snapshot reports its fill`).not.toBeNull();
  } else {
    expect(lv.origin, where).toBeNull();
  }
}

describe('hidden LVs', () => {
  it('a snapshot being merged is reported hidden, [snap0], and parsed by its name', () => {
    const json = JSON.stringify({
      report: [
        {
          lv: [
            {
              lv_name: 'lv-root',
              vg_name: 'vgroup',
              lv_attr: 'Owi-aos---',
              lv_size: '1073741824',
              origin: '',
              snap_percent: '',
              lv_tags: '',
            },
            {
              lv_name: '[snap0]',
              vg_name: 'vgroup',
              lv_attr: 'Swi-a-s---',
              lv_size: '218103808',
              origin: 'lv-root',
              snap_percent: '1.01',
              lv_tags: '',
            },
          ],
        },
      ],
    });
    const lvs = parseLvs(json);
    expect(lvs.map((l) => [l.name, l.merging, l.kind])).toEqual([
      ['lv-root', true, 'origin'],
      ['snap0', true, 'snapshot'],
    ]);
  });
});

describe('LVM argv builders and lv_attr', () => {
  it('build each command line as the flows ran them by hand', () => {
    expect(pvCreateArgv('/dev/vdb2')).toEqual(['pvcreate', ['-ff', '-y', '/dev/vdb2']]);
    expect(vgCreateArgv('vg', '/dev/vdb2', ['a', 'b'])).toEqual([
      'vgcreate',
      ['-y', '--addtag', 'a', '--addtag', 'b', 'vg', '/dev/vdb2'],
    ]);
    expect(lvCreateArgv('vg', 'lv-root', { kind: 'percent', percent: 45 })[1]).toEqual([
      '-y',
      '-W',
      'y',
      '-Z',
      'y',
      '-n',
      'lv-root',
      '-l',
      '45%VG',
      'vg',
    ]);
    expect(lvCreateArgv('vg', 'lv-x', { kind: 'bytes', bytes: 4096 })[1]).toContain('4096b');
    expect(lvCreateWipedArgv('vg', 'new', 8)).toEqual([
      'lvcreate',
      ['--yes', '--wipesignatures', 'y', '--name', 'new', '--size', '8b', 'vg'],
    ]);
    expect(
      snapshotArgv({
        vg: 'vg',
        origin: 'lv-root',
        name: 'snap0',
        size: { kind: 'percent', percent: 20 },
        tags: ['t'],
      }),
    ).toEqual(['lvcreate', ['--snapshot', '-n', 'snap0', '-l', '20%ORIGIN', '--addtag', 't', 'vg/lv-root']]);
    expect(lvMergeArgv('vg', 'snap0')).toEqual(['lvconvert', ['--merge', '-i', '1', 'vg/snap0']]);
    expect(vgActivateArgv('vg')).toEqual(['vgchange', ['-ay', 'vg']]);
    expect(vgDeactivateArgv('vg')).toEqual(['vgchange', ['-an', 'vg']]);
    expect(vgTagsArgv('vg', { add: ['a'], del: ['d1', 'd2'] })).toEqual([
      'vgchange',
      ['--deltag', 'd1', '--deltag', 'd2', '--addtag', 'a', 'vg'],
    ]);
    expect(lvmCommand(vgActivateArgv('vg'))).toEqual({
      file: 'vgchange',
      args: ['-ay', 'vg'],
      mutates: true,
    });
  });

  it('decodes lv_attr by its named positions', () => {
    expect(decodeLvAttr('owi-aos---')).toEqual({
      kind: 'origin',
      merging: false,
      invalid: false,
      active: true,
      open: true,
    });
    expect(decodeLvAttr('Swi-a-s---')).toMatchObject({ kind: 'snapshot', merging: true, open: false });
    expect(decodeLvAttr('swi-I-s---')).toMatchObject({ invalid: true, active: false });
    expect(withLvAttr('Owi-aos---', LV_ATTR.type, '-')).toBe('-wi-aos---');
  });
});
