import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { renderConfig } from '../../src/config/render.js';
import { defaultConfig } from '../../src/config/schema.js';
import {
  ConfigError,
  ExitCode,
  exitCodeOf,
  InterruptedError,
  NotFoundError,
  VerifyError,
} from '../../src/errors.js';
import {
  hostKind,
  imagePaths,
  listImages,
  parseSumFile,
  pathsOfImageFile,
  planPrune,
  sha256File,
  sumFileText,
} from '../../src/image/files.js';
import { fsFacts, parseDumpe2fs, readManifest } from '../../src/image/manifest.js';
import { listedImages, runImagePrune } from '../../src/image/prune.js';
import { imageDue, lastImageSlot } from '../../src/daemon/jobs.js';
import { groupBackups, scanLocal } from '../../src/remote/backups.js';
import { planRetention } from '../../src/remote/copy-plan.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { sh } from './helpers/image-tools.js';
import { parseBackupName } from '../../src/names/backup-files.js';

const T = new Date('2026-03-01T03:00:05Z');

describe('image names', () => {
  it('follow the backup naming of remote copy: one group of three files per image', () => {
    const p = imagePaths('/diskbackup', 'appliance7', T);
    expect(p.image).toBe('/diskbackup/zshield-appliance7-20260301T030005Z.img.zst');
    expect(p.sum).toBe('/diskbackup/zshield-appliance7-20260301T030005Z.sha256');
    expect(p.manifest).toBe('/diskbackup/zshield-appliance7-20260301T030005Z.manifest.json');
    expect(p.imagePart).toBe('/diskbackup/zshield-appliance7-20260301T030005Z.img.zst.part');
    expect(p.rawPart).toBe('/diskbackup/zshield-appliance7-20260301T030005Z.raw.part');
    for (const f of [p.image, p.sum, p.manifest]) {
      expect(parseBackupName(path.basename(f))).toEqual({ kind: 'appliance7', stamp: '20260301T030005Z' });
    }
    // Work files are never a backup to remote copy.
    for (const f of [p.imagePart, p.rawPart, p.sumPart, p.manifestPart]) {
      expect(parseBackupName(path.basename(f))).toBeNull();
    }
    const groups = groupBackups(
      [p.image, p.sum, p.manifest].map((f) => ({ name: path.basename(f), size: 1 })),
    );
    expect([...groups.keys()]).toEqual(['appliance7']);
    expect(groups.get('appliance7')![0]!.files).toHaveLength(3);
  });

  it('the host part is made of what the naming allows', () => {
    expect(hostKind('appliance7.example.com')).toBe('appliance7');
    expect(hostKind('Box_3')).toBe('Box_3');
    expect(hostKind('--weird name!')).toBe('weird-name-');
    expect(hostKind('')).toBe('appliance');
    expect(parseBackupName(`zshield-${hostKind('--weird name!')}-20260301T030005Z.img.zst`)).not.toBeNull();
  });

  it('pathsOfImageFile accepts only an image name, and finds its companions', () => {
    const p = pathsOfImageFile('/x/zshield-h1-20260301T030005Z.img.zst')!;
    expect(p.sum).toBe('/x/zshield-h1-20260301T030005Z.sha256');
    expect(pathsOfImageFile('/x/zshield-h1-20260301T030005Z.sha256')).toBeNull();
    expect(pathsOfImageFile('/x/zshield-h1-20260301T030005Z.img.zst.part')).toBeNull();
    expect(pathsOfImageFile('/x/backup.img.zst')).toBeNull();
    expect(pathsOfImageFile('/x/zshield-h1-20261399T030005Z.img.zst')).toBeNull();
  });
});

describe('listing and pruning never touch a file zshield did not make', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-img-'));
  });
  afterEach(() => cleanup());

  const put = (name: string, text = 'x') => writeFileSync(path.join(dir, name), text);
  const image = (kind: string, stamp: string) => {
    for (const ext of ['img.zst', 'sha256', 'manifest.json']) put(`zshield-${kind}-${stamp}.${ext}`);
  };
  const FOREIGN = [
    'notes.txt',
    'zshield-h1-20260101T030000Z.log.gz', // another module's backup, same host and pattern
    'zshield-h1-2026.img.zst', // not a time
    'zshield-h1-20260230T030000Z.img.zst', // not a date
    'h1-20260101T030000Z.img.zst', // no prefix
    'zshield-h1-20260101T030000Z.img.zst.bak',
    'zshield-h1-20260101T030000Z.tmp', // another writer's work file
  ];

  function populate() {
    image('h1', '20260101T030000Z');
    image('h1', '20260102T030000Z');
    image('h1', '20260103T030000Z');
    image('h1', '20260104T030000Z');
    image('other', '20251201T030000Z'); // another host sharing the directory
    for (const f of FOREIGN) put(f);
    // A symlink and a directory with our names: not regular files, never ours.
    symlinkSync('/etc/hostname', path.join(dir, 'zshield-h1-20251101T030000Z.img.zst'));
    mkdirSync(path.join(dir, 'zshield-h1-20251102T030000Z.img.zst'));
    // Leftovers of a crash: work files, and companions whose image is gone.
    put('zshield-h1-20260105T030000Z.img.zst.part');
    put('zshield-h1-20260105T030000Z.raw.part');
    put('zshield-h1-20251231T030000Z.sha256');
    put('zshield-h1-20251231T030000Z.manifest.json');
  }

  it('listImages: ours only, grouped, newest first', () => {
    populate();
    const l = listImages(dir);
    expect(l.images.map((e) => `${e.kind}@${e.stamp}:${e.files.length}:${e.image ? 'i' : '-'}`)).toEqual([
      'h1@20260104T030000Z:3:i',
      'h1@20260103T030000Z:3:i',
      'h1@20260102T030000Z:3:i',
      'h1@20260101T030000Z:3:i',
      'h1@20251231T030000Z:2:-',
      'other@20251201T030000Z:3:i',
    ]);
    expect(l.parts.map((f) => f.name)).toEqual([
      'zshield-h1-20260105T030000Z.img.zst.part',
      'zshield-h1-20260105T030000Z.raw.part',
    ]);
  });

  it('planPrune keeps the newest N per host; work files only when no job runs', () => {
    populate();
    const idle = planPrune(listImages(dir), 2, false);
    expect(idle.images.map((e) => e.base)).toEqual([
      'zshield-h1-20260102T030000Z',
      'zshield-h1-20260101T030000Z',
    ]);
    expect(idle.orphans.map((f) => f.name)).toHaveLength(2);
    expect(idle.parts).toHaveLength(2);
    const busy = planPrune(listImages(dir), 2, true);
    expect(busy.orphans).toEqual([]);
    expect(busy.parts).toEqual([]);
  });

  it('image prune --keep 1 deletes old images of this host with their companions, and nothing else', async () => {
    populate();
    const before = readdirSync(dir).sort();
    const ctx = testContext({
      runner: new RecordingRunner(),
      dir: path.join(dir, '..', `${path.basename(dir)}-ctx`),
      clock: new FakeClock(T),
      edit: (c) => {
        c.image.dir = dir;
      },
    });
    const { removed } = await runImagePrune(ctx, { keep: 1, kind: 'h1' });
    const after = readdirSync(dir).sort();
    const gone = before.filter((f) => !after.includes(f));
    expect(gone.sort()).toEqual(
      [
        ...['20260101', '20260102', '20260103'].flatMap((d) =>
          ['img.zst', 'sha256', 'manifest.json'].map((e) => `zshield-h1-${d}T030000Z.${e}`),
        ),
        'zshield-h1-20251231T030000Z.sha256',
        'zshield-h1-20251231T030000Z.manifest.json',
        'zshield-h1-20260105T030000Z.img.zst.part',
        'zshield-h1-20260105T030000Z.raw.part',
      ].sort(),
    );
    expect(removed).toHaveLength(gone.length);
    for (const f of FOREIGN) expect(existsSync(path.join(dir, f))).toBe(true);
    expect(existsSync(path.join(dir, 'zshield-other-20251201T030000Z.img.zst'))).toBe(true);
    expect(existsSync(path.join(dir, 'zshield-h1-20251101T030000Z.img.zst'))).toBe(true); // the symlink
    expect(existsSync('/etc/hostname')).toBe(true);
    expect(ctx.printed[0]).toMatch(/^Prune images of h1 in .*: keep the newest 1/);
  });

  it('dry-run prune lists what it would delete, deletes nothing, and never says it pruned', async () => {
    populate();
    const before = readdirSync(dir).sort();
    const ctx = testContext({
      runner: new RecordingRunner(true),
      dir: path.join(dir, '..', `${path.basename(dir)}-ctx`),
      clock: new FakeClock(T),
      dryRun: true,
      edit: (c) => {
        c.image.dir = dir;
      },
    });
    const { plan, removed } = await runImagePrune(ctx, { keep: 3, kind: 'h1' });
    expect(plan.images.map((e) => e.stamp)).toEqual(['20260101T030000Z']);
    expect(removed).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(before);
    expect(ctx.printed.join('\n')).toContain('delete zshield-h1-20260101T030000Z (3 file(s))');
    // Issue 13 point 2: a dry run never reports work as done, on stdout or in the log.
    const said = [...ctx.printed, ...ctx.log.lines].join('\n');
    expect(said).not.toMatch(/\bpruned\b|\bremoved\b/);
  });

  it('prune --dry-run --json prints the complete plan; a run deletes exactly the files printed', async () => {
    populate();
    const ctxOf = (dryRun: boolean) =>
      testContext({
        runner: new RecordingRunner(dryRun),
        dir: path.join(dir, '..', `${path.basename(dir)}-ctx`),
        clock: new FakeClock(T),
        dryRun,
        edit: (c) => {
          c.image.dir = dir;
        },
      });
    const dry = ctxOf(true);
    await runImagePrune(dry, { keep: 1, kind: 'h1', json: true });
    const plan = JSON.parse(dry.printed.join('\n')) as { title: string; steps: { edit: string[] }[] };
    expect(plan.title).toMatch(/^Prune images of h1 in .*: keep the newest 1$/);
    const printed = plan.steps.flatMap((s) => s.edit).sort();
    const before = readdirSync(dir).sort();
    const { removed } = await runImagePrune(ctxOf(false), { keep: 1, kind: 'h1' });
    expect(removed.sort()).toEqual(printed);
    const gone = before.filter((f) => !readdirSync(dir).includes(f));
    expect(gone.map((f) => path.join(dir, f)).sort()).toEqual(printed);
  });

  it('image.dir that is a regular file: a not-found error naming the path (exit 5), not an internal error', () => {
    const file = path.join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    let err: unknown;
    try {
      listedImages(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NotFoundError);
    expect(exitCodeOf(err)).toBe(ExitCode.notFound);
    expect((err as Error).message).toBe(`image.dir ${file} is not a directory`);
  });

  it('remote retention sees an image and its companions as one backup', () => {
    populate();
    const local = scanLocal(
      [dir],
      testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(T) }).log,
    );
    const all = local.map((f) => ({ name: f.name, size: f.size }));
    const plan = planRetention(local, { files: all, parts: [] }, 2);
    const deleted = plan.deleteLocal.map((f) => f.name).filter((n) => n.startsWith('zshield-h1-'));
    // Three h1 images over the limit of 2 (the companions-only group counts as one), each whole.
    expect(deleted.filter((n) => n.endsWith('.img.zst'))).toHaveLength(2);
    expect(deleted.filter((n) => n.endsWith('.manifest.json'))).toHaveLength(3);
  });
});

describe('checksum files', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-sum-'));
  });
  afterEach(() => cleanup());

  it('are what sha256sum -c accepts, and catch a flipped byte', async () => {
    const name = 'zshield-h1-20260101T030000Z.img.zst';
    const file = path.join(dir, name);
    writeFileSync(file, Buffer.from('an image, really'));
    const hex = await sha256File(file);
    expect(hex).toBe(sh('sha256sum', [file]).split(' ')[0]);
    const sum = path.join(dir, 'zshield-h1-20260101T030000Z.sha256');
    writeFileSync(sum, sumFileText(hex, name));
    expect(sh('sh', ['-c', `cd '${dir}' && sha256sum -c '${path.basename(sum)}'`])).toBe(`${name}: OK\n`);
    expect(parseSumFile(sumFileText(hex, name), name)).toBe(hex);
    expect(parseSumFile(`${hex} *${name}\n`, name)).toBe(hex);
    expect(parseSumFile(sumFileText(hex, name), 'other.img.zst')).toBeNull();
    writeFileSync(file, Buffer.from('an image, reallY'));
    expect(await sha256File(file)).not.toBe(hex);
  });

  it('reading for a checksum stops at the signal (exit 9, not an internal error)', async () => {
    const file = path.join(dir, 'big');
    writeFileSync(file, Buffer.alloc(4 * 1024 * 1024));
    const abort = new AbortController();
    abort.abort();
    await expect(sha256File(file, abort.signal)).rejects.toBeInstanceOf(InterruptedError);
  });

  it('readManifest: missing, broken or foreign manifests are VerifyErrors', () => {
    const f = path.join(dir, 'm.json');
    expect(() => readManifest(f)).toThrow(VerifyError);
    writeFileSync(f, '{');
    expect(() => readManifest(f)).toThrow(/not valid JSON/);
    writeFileSync(f, JSON.stringify({ format: 'something-else/1' }));
    expect(() => readManifest(f)).toThrow(/not a zshield image manifest: format/);
  });
});

// dumpe2fs -h of a real 64 MiB ext4 (e2fsprogs 1.47.0), trimmed.
const DUMPE2FS = `Filesystem volume name:   <none>
Last mounted on:          <not available>
Filesystem UUID:          73f86525-10e8-4440-a41d-1dc3dcc89797
Filesystem magic number:  0xEF53
Filesystem revision #:    1 (dynamic)
Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum
Filesystem state:         clean
Inode count:              16384
Block count:              65536
Reserved block count:     3276
Free blocks:              53091
Free inodes:              16370
First block:              1
Block size:               1024
Fragment size:            1024

Journal features:         (none)
Total journal size:       4096k
`;

describe('file system facts', () => {
  it('from blkid -o export and dumpe2fs -h', () => {
    expect(parseDumpe2fs(DUMPE2FS)['Filesystem features']).toMatch(/^has_journal/);
    const f = fsFacts('DEVNAME=/dev/vgroup/snap0\nUUID=73f8\nBLOCK_SIZE=1024\nTYPE=ext4\n', DUMPE2FS);
    expect(f).toEqual({
      type: 'ext4',
      uuid: '73f8',
      label: null,
      blockSize: 1024,
      blockCount: 65536,
      freeBlocks: 53091,
      sizeBytes: 65536 * 1024,
      usedBytes: (65536 - 53091) * 1024,
    });
  });

  it('only ext2/3/4 can be imaged', () => {
    expect(fsFacts('UUID=1\nTYPE=xfs\n', '')).toBe('holds a xfs file system, not ext2/3/4');
    expect(fsFacts('', '')).toBe('holds no file system blkid knows, not ext2/3/4');
    expect(fsFacts('TYPE=ext4\n', 'Block size: 4096\n')).toMatch(/gave no block size/);
  });
});

describe('image config', () => {
  it('defaults, and a round trip through render', () => {
    const c = defaultConfig();
    expect(c.image).toEqual({
      dir: '/diskbackup',
      source: 'temporary',
      tries: 1,
      keep: 3,
      schedule: null,
      tempSnapshotSize: { kind: 'percent', percent: 20 },
      mustContain: ['/etc/fstab'],
    });
    const text = JSON.stringify({ image: { schedule: { weekday: 0 }, tempSnapshotSize: '4G', tries: 3 } });
    const parsed = parseConfigText(text, 'z.conf').config;
    expect(parsed.image.tempSnapshotSize).toEqual({ kind: 'bytes', bytes: 4 * 1024 ** 3 });
    const again = parseConfigText(JSON.stringify(renderConfig(parsed)), 'z.conf').config;
    expect(again.image).toEqual(parsed.image);
  });

  it('refuses bad values, each named', () => {
    const bad = JSON.stringify({
      image: { dir: 'diskbackup', source: 'lv-root', tries: 0, schedule: 'weekly', mustContain: ['/etc/"x'] },
    });
    const err = (() => {
      try {
        parseConfigText(bad, 'z.conf');
      } catch (e) {
        return e as ConfigError;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    const where = err!.problems.map((p) => p.where);
    expect(where).toEqual(
      expect.arrayContaining([
        'z.conf: image.dir',
        'z.conf: image.source',
        'z.conf: image.tries',
        'z.conf: image.schedule',
        'z.conf: image.mustContain.0',
      ]),
    );
  });
});

describe('image schedule', () => {
  const at = { hour: 3, minute: 0 };
  // Local time: 2026-03-01 is a Sunday.
  const d = (day: number, h: number, m = 0) => new Date(2026, 2, day, h, m);

  it('weekly: the last (weekday, dailyAt) at or before now', () => {
    expect(d(1, 12).getDay()).toBe(0);
    expect(lastImageSlot(d(1, 3, 5), { weekday: 0 }, at)).toEqual(d(1, 3));
    expect(lastImageSlot(d(1, 2, 59), { weekday: 0 }, at)).toEqual(d(-6, 3));
    expect(lastImageSlot(d(4, 10), { weekday: 0 }, at)).toEqual(d(1, 3));
    expect(lastImageSlot(d(4, 10), 'daily', at)).toEqual(d(4, 3));
    expect(lastImageSlot(d(4, 10), null, at)).toBeNull();
  });

  it('due when the newest image is older than the slot; a missed week is caught up', () => {
    const weekly = { weekday: 0 } as const;
    expect(imageDue({ now: d(1, 3, 5), schedule: weekly, at, lastImage: null })).toBe(true);
    expect(imageDue({ now: d(1, 3, 5), schedule: weekly, at, lastImage: d(1, 3, 1) })).toBe(false);
    expect(imageDue({ now: d(2, 3, 5), schedule: weekly, at, lastImage: d(1, 3, 1) })).toBe(false);
    // Off on Sunday: Monday's backup is followed by the image.
    expect(imageDue({ now: d(2, 9), schedule: weekly, at, lastImage: d(-6, 3, 1) })).toBe(true);
    expect(imageDue({ now: d(2, 9), schedule: null, at, lastImage: null })).toBe(false);
  });
});
