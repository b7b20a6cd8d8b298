import { mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/log/logger.js';
import { CopyRecords, copyRecordsFile, groupBackups, scanLocal } from '../../src/remote/backups.js';
import type { FileEntry, LocalFile } from '../../src/ssh/files.js';
import {
  type CheckCandidate,
  classifyRemote,
  planChecks,
  planCopy,
  planRetention,
  type RemoteListing,
} from '../../src/remote/copy-plan.js';
import { tempDir } from './helpers/context.js';
import { REAL_WRITES } from '../../src/system/writes.js';
import { backupFileName, parseBackupName } from '../../src/names/backup-files.js';

const day = (n: number) => new Date(Date.UTC(2026, 0, n, 3, 0, 0));
const local = (name: string, size = 100): LocalFile => ({ name, size, path: `/diskbackup/${name}` });
const image = (kind: string, d: number, size = 100): LocalFile[] =>
  ['img.zst', 'manifest.json', 'sha256'].map((ext) => local(backupFileName(kind, day(d), ext), size));
const log = (d: number, size = 10): LocalFile => local(backupFileName('log', day(d), 'log'), size);
const asRemote = (files: readonly FileEntry[]): FileEntry[] =>
  files.map((f) => ({ name: f.name, size: f.size }));
const listing = (files: FileEntry[], parts: FileEntry[] = []): RemoteListing => ({ files, parts });

describe('backup names', () => {
  it('parses kind and time; the kind may hold dashes and dots (host names)', () => {
    expect(parseBackupName('zshield-appliance-7.lab-20260101T030000Z.img.zst')).toEqual({
      kind: 'appliance-7.lab',
      stamp: '20260101T030000Z',
    });
    expect(parseBackupName('zshield-log-20261231T235959Z.log')).toEqual({
      kind: 'log',
      stamp: '20261231T235959Z',
    });
  });

  it.each([
    'notes.txt',
    'zshield-appliance-latest.img.zst',
    'zshield-appliance-20260101T030000Z',
    'zshield--20260101T030000Z.img',
    'zshield-a-20261301T030000Z.img',
    'zshield-a-20260230T030000Z.img',
    'zshield-a-20260101T250000Z.img',
    'zshield-a-20260101T030000Z.img.zst.tmp',
    'zshield-a-20260101T030000Z.img.zst.zshield-part',
    'zshield-a-20260101T030000Z.img.partial',
    'prefix-zshield-a-20260101T030000Z.img',
    'zshield-a-20260101t030000z.img',
  ])('%s is not a backup', (name) => {
    expect(parseBackupName(name)).toBeNull();
  });

  it('backupFileName makes names that parse back', () => {
    const n = backupFileName('host-1', new Date('2026-03-04T05:06:07.890Z'), 'img.zst');
    expect(n).toBe('zshield-host-1-20260304T050607Z.img.zst');
    expect(parseBackupName(n)).toEqual({ kind: 'host-1', stamp: '20260304T050607Z' });
  });

  it('groups an image with its manifest and checksum, newest first per kind', () => {
    const files = [...image('a', 1), log(3), ...image('a', 2), local('README')];
    const g = groupBackups(files);
    expect([...g.keys()]).toEqual(['a', 'log']);
    expect(g.get('a')!.map((x) => x.stamp)).toEqual(['20260102T030000Z', '20260101T030000Z']);
    expect(g.get('a')![0]!.files.map((f) => f.name)).toEqual([
      'zshield-a-20260102T030000Z.img.zst',
      'zshield-a-20260102T030000Z.manifest.json',
      'zshield-a-20260102T030000Z.sha256',
    ]);
  });
});

describe('planCopy', () => {
  it('uploads what the remote lacks, skips what it has, resumes parts', () => {
    const files = [...image('a', 1), ...image('a', 2, 500)];
    const remote = listing(asRemote(image('a', 1)), [
      { name: `${files[3]!.name}.zshield-part`, size: 200 },
      // A part longer than its file is not a prefix of it: start over.
      { name: `${files[4]!.name}.zshield-part`, size: 900 },
    ]);
    const plan = planCopy(files, remote, 5);
    expect(plan.present.map((f) => f.name)).toEqual(image('a', 1).map((f) => f.name));
    expect(plan.uploads.map((u) => [u.file.name, u.resumeFrom, u.replaces])).toEqual([
      [files[3]!.name, 200, null],
      [files[4]!.name, 0, null],
      [files[5]!.name, 0, null],
    ]);
    expect(plan.tooOld).toEqual([]);
  });

  it('a second run with everything there plans nothing', () => {
    const files = [...image('a', 1), log(1)];
    const plan = planCopy(files, listing(asRemote(files)), 5);
    expect(plan.uploads).toEqual([]);
    expect(plan.present.length).toBe(4);
  });

  it('replaces a remote file of the same name and another size', () => {
    const f = log(1, 10);
    const plan = planCopy([f], listing([{ name: f.name, size: 7 }]), 5);
    expect(plan.uploads).toEqual([{ file: f, resumeFrom: 0, replaces: 7, differs: false }]);
  });

  it('a remote copy of the right size found to differ is copied again, not counted as there', () => {
    const [a, b] = [log(1), log(2)];
    const remote = listing(asRemote([a!, b!]), [{ name: `${b!.name}.zshield-part`, size: 4 }]);
    const plan = planCopy([a!, b!], remote, 5, new Set([b!.name, 'zshield-log-20250101T030000Z.log']));
    expect(plan.present).toEqual([a]);
    expect(plan.uploads).toEqual([{ file: b, resumeFrom: 4, replaces: b!.size, differs: true }]);
  });

  it('does not copy backups older than the newest `limit` of their kind, counting the remote', () => {
    const files = [log(1), log(2), log(3)];
    // The remote already has day 4 and 5: with limit 2, none of the local ones is worth copying.
    const remote = listing([log(4), log(5)].map((f) => ({ name: f.name, size: f.size })));
    const plan = planCopy(files, remote, 2);
    expect(plan.uploads).toEqual([]);
    expect(plan.tooOld.map((f) => f.name)).toEqual(files.map((f) => f.name).reverse());
    const plan3 = planCopy(files, remote, 3);
    expect(plan3.uploads.map((u) => u.file.name)).toEqual([log(3).name]);
  });
});

describe('planRetention', () => {
  it('keeps the newest `limit` of each kind here and there; other files are never listed', () => {
    const all = [...image('a', 1), ...image('a', 2), ...image('a', 3), log(1), log(2), log(3)];
    const remote = listing([
      ...asRemote(all),
      { name: 'README', size: 1 },
      { name: 'zshield.conf', size: 1 },
    ]);
    const plan = planRetention([...all, local('notes.txt')], remote, 2);
    expect(plan.deleteLocal.map((f) => f.name).sort()).toEqual(
      [...image('a', 1), log(1)].map((f) => f.name).sort(),
    );
    expect(plan.deleteRemote.sort()).toEqual([...image('a', 1), log(1)].map((f) => f.name).sort());
    expect(plan.kept).toEqual([]);
  });

  it('never deletes a local backup that has not reached the remote', () => {
    const files = [log(1), log(2), log(3)];
    // Day 1 never made it (or arrived with another size): it is the only copy.
    const remote = listing([{ name: log(1).name, size: 3 }, ...asRemote([log(2), log(3)])]);
    const plan = planRetention(files, remote, 1);
    expect(plan.deleteLocal.map((f) => f.name)).toEqual([log(2).name]);
    expect(plan.kept).toContainEqual({
      kind: 'log',
      stamp: '20260101T030000Z',
      where: 'local',
      reason: 'not on the remote yet',
    });
  });

  it('an image counts as one backup: deleted locally only when all its files are on the remote', () => {
    const files = [...image('a', 1), ...image('a', 2)];
    const remote = listing(asRemote([...image('a', 1).slice(0, 2), ...image('a', 2)]));
    const plan = planRetention(files, remote, 1);
    expect(plan.deleteLocal).toEqual([]);
    expect(plan.kept.map((k) => [k.where, k.stamp])).toEqual([['local', '20260101T030000Z']]);
    // The remote's old copy is still deleted: every kept backup of the kind is complete there.
    expect(plan.deleteRemote).toEqual(
      image('a', 1)
        .slice(0, 2)
        .map((f) => f.name),
    );
  });

  it('does not prune the remote while a newer backup of the kind is incomplete there', () => {
    const files = [log(2), log(3)];
    const remote = listing(asRemote([log(1), log(2)]));
    const plan = planRetention(files, remote, 2);
    expect(plan.deleteRemote).toEqual([]);
    expect(plan.kept).toContainEqual({
      kind: 'log',
      stamp: '20260101T030000Z',
      where: 'remote',
      reason: 'newer log backups have not all reached the remote',
    });
  });

  it('never counts a remote copy found to differ: the local backup stays, the remote is not pruned', () => {
    const files = [log(1), log(2), log(3)];
    const remote = listing(asRemote(files));
    // Day 2 is over the limit of 1 but its remote copy was found corrupted; day 3 (kept) too.
    const plan = planRetention(files, remote, 1, new Set([log(1).name, log(3).name]));
    expect(plan.deleteLocal.map((f) => f.name)).toEqual([log(2).name]);
    expect(plan.kept).toContainEqual({
      kind: 'log',
      stamp: '20260101T030000Z',
      where: 'local',
      reason: 'its remote copy does not match',
    });
    expect(plan.deleteRemote).toEqual([]);
    expect(plan.kept.filter((k) => k.where === 'remote').map((k) => k.stamp)).toEqual([
      '20260102T030000Z',
      '20260101T030000Z',
    ]);
  });

  it('deletes abandoned parts, keeps the one that can still be resumed', () => {
    const files = [log(3), log(4)];
    const remote = listing(asRemote([log(3)]), [
      { name: `${log(4).name}.zshield-part`, size: 5 },
      { name: `${log(1).name}.zshield-part`, size: 5 },
      { name: 'zshield-log-gone-20260101T030000Z.log.zshield-part', size: 5 },
    ]);
    const plan = planRetention(files, remote, 2);
    expect(plan.deleteRemote.sort()).toEqual(
      [`${log(1).name}.zshield-part`, 'zshield-log-gone-20260101T030000Z.log.zshield-part'].sort(),
    );
  });

  it('classifyRemote separates finished files, parts and foreign names', () => {
    const r = classifyRemote([
      { name: log(1).name, size: 1 },
      { name: `${log(2).name}.zshield-part`, size: 1 },
      { name: 'README', size: 1 },
      { name: 'something.zshield-part', size: 1 },
    ]);
    expect(r.files.map((f) => f.name)).toEqual([log(1).name]);
    expect(r.parts.map((f) => f.name)).toEqual([`${log(2).name}.zshield-part`]);
  });
});

describe('planChecks', () => {
  const cands = (n: number, checkedAt: (i: number) => string | null = () => null): CheckCandidate[] =>
    Array.from({ length: n }, (_, i) => ({ file: log(i + 1), checkedAt: checkedAt(i), changed: false }));

  it('--verify-all checks every file already on the remote', () => {
    const c = cands(9);
    expect(planChecks(c, 7, true).map((x) => [x.file.name, x.why])).toEqual(
      c.map((x) => [x.file.name, '--verify-all']),
    );
  });

  it('checks ceil(n/cycle) files, never-checked first, then the least recently checked', () => {
    const c = cands(9, (i) => (i === 4 ? null : `2026-01-0${9 - i}T00:00:00.000Z`));
    const checks = planChecks(c, 7, false);
    expect(checks.map((x) => [x.file.name, x.why])).toEqual([
      [log(5).name, 'never checked'],
      [log(9).name, 'last checked 2026-01-01T00:00:00.000Z'],
    ]);
    expect(planChecks([], 7, false)).toEqual([]);
    expect(
      planChecks(
        cands(1, () => '2026-01-01T00:00:00.000Z'),
        7,
        false,
      ).length,
    ).toBe(1);
  });

  it('a local file changed since its copy was checked is always checked, beside the share', () => {
    const c = cands(3, () => '2026-01-01T00:00:00.000Z');
    c[2]!.changed = true;
    const checks = planChecks(c, 7, false);
    expect(checks.map((x) => [x.file.name, x.why])).toEqual([
      [log(3).name, 'changed here since its copy was checked'],
      [log(1).name, 'last checked 2026-01-01T00:00:00.000Z'],
    ]);
  });

  it('`cycle` runs check every file once, whatever the count', () => {
    for (const [n, cycle] of [
      [20, 7],
      [7, 7],
      [3, 7],
      [50, 1],
    ] as const) {
      const checkedAt = new Map<string, string | null>(cands(n).map((c) => [c.file.name, null]));
      const seen = new Set<string>();
      for (let run = 0; run < cycle; run++) {
        const now = `2026-02-${String(run + 1).padStart(2, '0')}T00:00:00.000Z`;
        const c = cands(n, (i) => checkedAt.get(log(i + 1).name) ?? null);
        for (const x of planChecks(c, cycle, false)) {
          seen.add(x.file.name);
          checkedAt.set(x.file.name, now);
        }
      }
      expect(seen.size, `${n} files over ${cycle} runs`).toBe(n);
    }
  });
});

describe('CopyRecords', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  it('keeps each target apart, remembers a copy found to differ until it is replaced, drops the gone', () => {
    const t = tempDir('zshield-remote-records-');
    cleanup = t.cleanup;
    const file = copyRecordsFile(path.join(t.dir, 'state'));
    const rec = {
      size: 10,
      sha256: 'a'.repeat(64),
      identity: '1:2:10:3:4',
      checkedAt: '2026-01-01T00:00:00.000Z',
    };
    const a = new CopyRecords(REAL_WRITES, file, 'u@h:22:/a');
    a.set(log(1).name, rec);
    a.set(log(2).name, rec);
    a.markDiffers(log(2).name);
    new CopyRecords(REAL_WRITES, file, 'u@h:22:/b').set(log(3).name, rec);

    const again = new CopyRecords(REAL_WRITES, file, 'u@h:22:/a');
    expect([...again.byName.keys()]).toEqual([log(1).name, log(2).name]);
    expect(again.differs()).toEqual(new Set([log(2).name]));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // A verified upload replaces the record: no longer differing.
    again.set(log(2).name, rec);
    again.keepOnly(new Set([log(2).name]));
    const last = new CopyRecords(REAL_WRITES, file, 'u@h:22:/a');
    expect([...last.byName.keys()]).toEqual([log(2).name]);
    expect(last.differs()).toEqual(new Set());
    expect([...new CopyRecords(REAL_WRITES, file, 'u@h:22:/b').byName.keys()]).toEqual([log(3).name]);
  });

  it('an unreadable records file is an empty one (every copy then counts as never checked)', () => {
    const t = tempDir('zshield-remote-records-');
    cleanup = t.cleanup;
    const file = path.join(t.dir, 'remote-copies.json');
    writeFileSync(file, '{ not json');
    expect(new CopyRecords(REAL_WRITES, file, 'x').byName.size).toBe(0);
  });
});

describe('scanLocal', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());

  it('lists backup files of each source, skipping foreign names, links, directories and duplicates', () => {
    const t = tempDir('zshield-remote-scan-');
    cleanup = t.cleanup;
    const a = path.join(t.dir, 'a');
    const b = path.join(t.dir, 'b');
    mkdirSync(a);
    mkdirSync(b);
    writeFileSync(path.join(a, log(1).name), 'x'.repeat(10));
    writeFileSync(path.join(a, 'notes.txt'), 'x');
    writeFileSync(path.join(b, log(1).name), 'dup');
    writeFileSync(path.join(b, log(2).name), 'yy');
    mkdirSync(path.join(b, log(3).name));
    symlinkSync('/etc/passwd', path.join(b, log(4).name));
    const lg = memoryLogger();
    const files = scanLocal([a, b, path.join(t.dir, 'missing')], lg);
    expect(files).toEqual([
      { name: log(1).name, size: 10, path: path.join(a, log(1).name) },
      { name: log(2).name, size: 2, path: path.join(b, log(2).name) },
    ]);
    expect(lg.lines.join('\n')).toMatch(/same name as/);
    expect(lg.lines.join('\n')).toMatch(/missing does not exist/);
  });
});
