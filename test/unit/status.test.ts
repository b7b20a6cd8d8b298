import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Config, defaultConfig } from '../../src/config/schema.js';
import { hostKind } from '../../src/image/files.js';
import { MANIFEST_FORMAT } from '../../src/image/manifest.js';
import { markTags } from '../../src/image/restore-mark.js';
import { writeDaemonInfo } from '../../src/state/daemon-info.js';
import { lastBackupFile } from '../../src/state/store.js';
import { writeJsonAtomic } from '../../src/system/atomic-file.js';
import { formatImages, gatherImages } from '../../src/status/images.js';
import { formatStatus, gatherStatus } from '../../src/status/status.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { epoch, GiB, type LvRow } from './helpers/lvm-json.js';
import { REAL_WRITES } from '../../src/system/writes.js';

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
      lastCheck: null,
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
    writeJsonAtomic(REAL_WRITES, lastBackupFile(`${dir}/state`), {
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

  it('names an image restore cut short (the VG mark and the record in the VG tags)', async () => {
    const tags = markTags({
      id: 'abcd1234',
      image: '/data/images/zshield-box-20261101T030000Z.img.zst',
      source: null,
      sha256: `abcd1234${'0'.repeat(56)}`,
      vg: 'vgroup',
      startedAt: '2026-11-29T10:00:00.000Z',
    });
    const { report } = await status(new FakeLvm({ vg: { tags }, lvs: [ROOT, SNAP] }));
    expect(report.recoveryPending).toBe('image-restore');
    const text = formatStatus(report);
    expect(text).toContain('recovery:      IMAGE-RESTORE UNFINISHED');
    expect(text).toMatch(
      /image restore of \/data\/images\/zshield-box-20261101T030000Z\.img\.zst .*started 2026-11-29T10:00:00.000Z\) was cut short: lv-root is half-written/,
    );
  });

  it('names an off-box restore cut short, and what runs it again', async () => {
    const { report } = await status(new FakeLvm({ vg: { tags: ['zshield_offbox_restore'] }, lvs: [ROOT] }));
    expect(report.recoveryPending).toBe('offbox-restore');
    const text = formatStatus(report);
    expect(text).toContain('recovery:      OFFBOX-RESTORE UNFINISHED');
    expect(text).toContain('the golden medium runs the restore again at its next boot');
  });

  it('an image restore mark that does not say which image: status says so', async () => {
    const { report } = await status(
      new FakeLvm({ vg: { tags: ['zshield_image_restore=abcd1234'] }, lvs: [ROOT, SNAP] }),
    );
    expect(report.recoveryPending).toBe('image-restore');
    expect(formatStatus(report)).toMatch(
      /mark abcd1234\) was cut short: .* which image it wrote is not recorded/,
    );
  });

  it('a running daemon (live pid) is shown with its own next run', async () => {
    writeDaemonInfo(REAL_WRITES, `${dir}/run`, {
      pid: process.pid,
      startedAt: TAKEN.toISOString(),
      nextRun: '2026-11-22T03:00:00.000Z',
      lastCheck: '2026-11-21T14:29:00.000Z',
      lastHealth: 'ok: fine',
    });
    const { report } = await status(new FakeLvm({ lvs: [ROOT, SNAP] }));
    expect(report.daemon).toEqual({
      running: true,
      pid: process.pid,
      nextRun: '2026-11-22T03:00:00.000Z',
      lastHealth: 'ok: fine',
      lastCheck: '2026-11-21T14:29:00.000Z',
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

describe('status: image backups', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  const HOST = hostKind();
  const images = () => path.join(dir, 'images');

  /** An image's files as `image create` leaves them (content not needed: status reads names and manifests). */
  function put(
    kind: string,
    stamp: string,
    parts: { manifest?: 'valid' | 'broken' | 'none'; sum?: boolean } = {},
  ) {
    mkdirSync(images(), { recursive: true });
    const base = path.join(images(), `zshield-${kind}-${stamp}`);
    writeFileSync(`${base}.img.zst`, Buffer.alloc(3 * 1024 * 1024));
    if (parts.sum !== false)
      writeFileSync(`${base}.sha256`, `${'a'.repeat(64)}  zshield-${kind}-${stamp}.img.zst\n`);
    const m = parts.manifest ?? 'valid';
    if (m === 'broken') writeFileSync(`${base}.manifest.json`, '{"format":');
    if (m === 'valid') {
      writeFileSync(
        `${base}.manifest.json`,
        JSON.stringify({
          format: MANIFEST_FORMAT,
          image: `zshield-${kind}-${stamp}.img.zst`,
          createdAt: '2026-11-21T03:05:00.000Z',
          agent: { name: 'zshield', version: 'test' },
          host: { hostname: kind, kind },
          source: {
            vg: 'vgroup',
            lv: 'lv-root',
            snapshot: 'snap0',
            kind: 'snap0',
            snapshotTime: '2026-11-21T03:00:00.000Z',
            snapshotReason: 'daily',
            lvSizeBytes: GiB,
          },
          filesystem: {
            type: 'ext4',
            uuid: null,
            label: null,
            blockSize: 4096,
            blockCount: GiB / 4096,
            freeBlocks: 0,
            sizeBytes: GiB,
            usedBytes: GiB / 2,
          },
          compression: { format: 'zstd', command: ['zstd', '--check'], frameChecksum: true },
          sizes: { imageBytes: 3 * 1024 * 1024, rawBytes: GiB },
          checksums: { sha256: 'a'.repeat(64) },
          verification: { at: '2026-11-21T03:05:00.000Z', fsck: 'clean', contains: ['/etc/fstab'], tries: 1 },
          durationMs: 1,
        }),
      );
    }
    return `${base}.img.zst`;
  }

  const status = async (edit: (c: Config) => void) => {
    const ctx = testContext({
      runner: new FakeLvm({ lvs: [ROOT, SNAP] }).install(new RecordingRunner()),
      dir,
      clock: new FakeClock(NOW),
      edit: (c) => {
        c.image.dir = images();
        edit(c);
      },
    });
    return gatherStatus(ctx);
  };

  it("scheduled: the count of this host's images and the newest, verified; text and JSON", async () => {
    put(HOST, '20261114T030500Z');
    const newest = put(HOST, '20261121T030500Z');
    // Not counted: another host's image in a shared directory, a checksum left without its image.
    put('otherbox', '20261122T030500Z');
    writeFileSync(path.join(images(), `zshield-${HOST}-20261122T030500Z.sha256`), 'x');
    const report = await status((c) => {
      c.image.schedule = { weekday: 5 };
    });
    expect(report.images).toEqual({
      dir: images(),
      host: HOST,
      schedule: 'weekly on Friday',
      count: 2,
      newest: {
        file: newest,
        time: '2026-11-21T03:05:00.000Z',
        sizeBytes: 3 * 1024 * 1024,
        verified: true,
        fsck: 'clean',
        problem: null,
      },
      jobPid: null,
      error: null,
    });
    // --json prints the report as it is.
    expect(JSON.parse(JSON.stringify(report)).images.newest.verified).toBe(true);
    const text = formatStatus(report);
    expect(text).toContain(`images:        2 of ${HOST} in ${images()}; made weekly on Friday\n`);
    expect(text).toContain(
      `  newest:      ${newest}, 2026-11-21T03:05:00.000Z, 3.0 MiB, verified (fsck clean)`,
    );
  });

  it('the newest not verified (no manifest, a broken one, no checksum) says why', async () => {
    const image = put(HOST, '20261121T030500Z', { manifest: 'none' });
    let r = await status((c) => {
      c.image.schedule = 'daily';
    });
    expect(r.images?.newest).toMatchObject({ file: image, verified: false, problem: 'missing manifest' });
    expect(formatStatus(r)).toContain(
      `  newest:      ${image}, 2026-11-21T03:05:00.000Z, 3.0 MiB, NOT VERIFIED: missing manifest`,
    );
    put(HOST, '20261121T030500Z', { manifest: 'broken' });
    r = await status(() => {});
    expect(r.images?.newest?.verified).toBe(false);
    expect(r.images?.newest?.problem).toMatch(/is not valid JSON/);
    // A newer one without its checksum.
    put(HOST, '20261122T030500Z', { sum: false });
    expect((await status(() => {})).images?.newest).toMatchObject({
      verified: false,
      problem: 'missing checksum',
    });
  });

  it('not in use (no schedule, no images): nothing shown; scheduled with none yet: said so', async () => {
    const off = await status(() => {});
    expect(off.images).toBeNull();
    expect(formatStatus(off)).not.toContain('images:');
    // Images made by hand, no schedule: shown.
    put(HOST, '20261121T030500Z');
    expect(formatStatus(await status(() => {}))).toContain(
      `images:        1 of ${HOST} in ${images()}; no schedule (image.schedule)`,
    );
    const none = await gatherImages(withSchedule(dir, 'daily'), 'box9');
    expect(none).toMatchObject({ count: 0, newest: null, schedule: 'daily' });
    expect(formatImages(none!)).toEqual([`images:        none of box9 in ${images()}; made daily`]);
    // An image job running (its pid file names a live process) is shown too.
    mkdirSync(path.join(dir, 'run'), { recursive: true });
    writeFileSync(path.join(dir, 'run', 'image.pid'), String(process.pid));
    const running = await gatherImages(withSchedule(dir, null), 'box9');
    expect(running?.jobPid).toBe(process.pid);
    expect(formatImages(running!)).toContain(`  running:     an image job (pid ${process.pid})`);
  });

  it('scheduled but the directory cannot be read: an error line, status still works', async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'not-a-dir'), '');
    const r = await status((c) => {
      c.image.dir = path.join(dir, 'not-a-dir');
      c.image.schedule = 'daily';
    });
    expect(r.images?.error).toBe(`cannot read ${path.join(dir, 'not-a-dir')}: ENOTDIR`);
    expect(formatStatus(r)).toContain(
      `images:        ERROR: cannot read ${path.join(dir, 'not-a-dir')}: ENOTDIR`,
    );
    expect(r.health.level).toBe('warn');
  });
});

function withSchedule(dir: string, schedule: Config['image']['schedule']): Config {
  const c = defaultConfig();
  c.image.dir = path.join(dir, 'images');
  c.paths.runDir = path.join(dir, 'run');
  c.image.schedule = schedule;
  return c;
}
