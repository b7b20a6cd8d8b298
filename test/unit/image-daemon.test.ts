import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import { runDaemon } from '../../src/daemon/daemon.js';
import { hostKind } from '../../src/image/files.js';
import { readManifest } from '../../src/image/manifest.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext, waitFor } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { HybridRunner, makeExt4 } from './helpers/image-tools.js';
import { epoch, type LvRow, MiB } from './helpers/lvm-json.js';

// The daemon's image hook with the fake clock and LVM, and the real image tools on a real ext4
// file: the scheduled image follows the daily backup on its weekday, once; SIGTERM stops it clean.

// Local time: 2026-03-01 is a Sunday (weekday 0), 2026-03-02 a Monday.
const d = (day: number, h: number, m = 0, s = 0) => new Date(2026, 2, day, h, m, s);
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 64 * MiB, major: 253, minor: 200 };
const snapAt = (t: Date): LvRow => ({
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 16 * MiB,
  origin: 'lv-root',
  snapPercent: '2.00',
  tags: ['zshield_reason=daily', `zshield_time=${epoch(t)}`],
  minor: 201,
});

describe('daemon: scheduled image after the daily backup', () => {
  let dir: string;
  let cleanup: () => void;
  let daemon: Promise<void> | null = null;
  const baseline = { term: 0 };
  let fsFile: string;
  let backupDir: string;

  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-imgd-'));
    baseline.term = process.listenerCount('SIGTERM');
    fsFile = path.join(dir, 'lv-root.ext4');
    backupDir = path.join(dir, 'diskbackup');
  });
  afterEach(async () => {
    if (daemon) {
      process.emit('SIGTERM', 'SIGTERM');
      await daemon;
      daemon = null;
    }
    expect(process.listenerCount('SIGTERM')).toBe(baseline.term);
    cleanup();
  });

  function start(opts: { now: Date; lvs: LvRow[]; edit?: (c: Config) => void; fstab?: boolean }) {
    makeExt4(fsFile, { fstab: opts.fstab ?? true });
    const clock = new FakeClock(opts.now);
    const lvm = new FakeLvm({ lvs: opts.lvs });
    lvm.createTime = epoch(opts.now);
    const recording = lvm.install(new RecordingRunner());
    const ctx = testContext({
      runner: recording,
      dir,
      clock,
      edit: (c) => {
        c.daemon.checkEverySeconds = 1;
        c.image.dir = backupDir;
        c.image.schedule = { weekday: 0 };
        opts.edit?.(c);
      },
    });
    const runner = new HybridRunner(
      recording,
      new Map([
        ['/dev/vgroup/lv-root', fsFile],
        ['/dev/vgroup/snap0-image', fsFile],
        ['/dev/vgroup/snap0', fsFile],
      ]),
      { log: ctx.log },
    );
    ctx.runner = runner;
    daemon = runDaemon(ctx, { reloadConfig: async () => ctx.config });
    const count = (prefix: string) => runner.calls.filter((c) => c.startsWith(prefix)).length;
    const images = () =>
      existsSync(backupDir) ? readdirSync(backupDir).filter((f) => f.endsWith('.img.zst')) : [];
    return { ctx, runner, lvm, clock, count, images };
  }

  async function stop(): Promise<void> {
    process.emit('SIGTERM', 'SIGTERM');
    await daemon;
    daemon = null;
  }

  it('on its weekday: the daily backup, then the image (from a temporary snapshot), once', async () => {
    const t = start({ now: d(1, 3, 0, 5), lvs: [ROOT, snapAt(d(0, 3))] });
    await waitFor(() => t.images().length === 1, 'the image');
    const order = t.runner.calls
      .filter((c) => /^(lvcreate|dd)/.test(c))
      .map((c) => c.split(' ').slice(0, 4).join(' '));
    expect(order).toEqual([
      'lvcreate --snapshot --name snap0-next', // the daily backup
      'lvcreate --snapshot --name snap0-image', // then the image's own snapshot
      'dd if=/dev/vgroup/snap0-image bs=4M iflag=count_bytes',
    ]);
    expect(t.ctx.log.lines).toContain('info: daemon: image due');
    const image = t.images()[0]!;
    expect(image).toMatch(new RegExp(`^zshield-${hostKind()}-\\d{8}T\\d{6}Z\\.img\\.zst$`));
    expect(readManifest(path.join(backupDir, image.replace('.img.zst', '.manifest.json'))).source.kind).toBe(
      'temporary',
    );
    expect(t.lvm.find('snap0-image')).toBeUndefined();
    // Later ticks the same day: neither a second backup nor a second image.
    const calls = t.runner.calls.length;
    await waitFor(() => t.count('vgs') >= 6, 'more ticks');
    expect(t.count('lvcreate')).toBe(2);
    expect(t.runner.calls.slice(calls).every((c) => /^(lvs|vgs) /.test(c))).toBe(true);
    await stop();
  });

  it('a missed Sunday is caught up after the next backup; then no image until the next Sunday', async () => {
    // Tuesday, and no image since Sunday's slot (the box was off): due after today's backup.
    const t = start({ now: d(3, 3, 0, 5), lvs: [ROOT, snapAt(d(2, 3))] });
    await waitFor(() => t.images().length === 1, 'the caught-up image');
    expect(t.count('lvcreate')).toBe(2);
    await stop();

    // With a recent image, a weekday that is not Sunday makes none.
    const t2 = start({
      now: d(4, 3, 0, 5), // Wednesday
      lvs: [ROOT, snapAt(d(3, 3))],
    });
    await waitFor(() => t2.count('lvcreate') === 1, 'the daily backup');
    await waitFor(() => t2.count('vgs') >= 5, 'a few ticks');
    expect(t2.ctx.log.lines).not.toContain('info: daemon: image due');
    expect(t2.images()).toHaveLength(1); // still the one from Tuesday
    await stop();
  });

  it('an image that fails is logged; the backup stands and is not retried', async () => {
    const t = start({ now: d(1, 3, 0, 5), lvs: [ROOT, snapAt(d(0, 3))], fstab: false });
    await waitFor(
      () =>
        t.ctx.log.lines.some((l) => l.startsWith('error: daemon: image failed: image verification failed')),
      'the image failure',
      15_000,
    );
    expect(t.images()).toEqual([]);
    expect(t.lvm.find('snap0-image')).toBeUndefined();
    const creates = t.count('lvcreate');
    await waitFor(() => t.count('vgs') >= 8, 'more ticks');
    expect(t.count('lvcreate')).toBe(creates);
    // The lines themselves, so a failure says why the backup failed.
    expect(t.ctx.log.lines.filter((l) => l.startsWith('error: daemon: daily backup failed'))).toEqual([]);
    await stop();
  });

  it('SIGTERM during the image stops it at once and cleans up; the daemon exits', async () => {
    const t = start({ now: d(1, 3, 0, 5), lvs: [ROOT, snapAt(d(0, 3))] });
    // A slow source: the file system's bytes, then a stall (a slow disk under dd).
    t.runner.rewriteStages = (stages) =>
      stages[0]!.file === 'dd'
        ? [
            { file: 'sh', args: ['-c', `cat '${fsFile}'; exec sleep 3600`], mutates: false },
            ...stages.slice(1),
          ]
        : [...stages];
    await waitFor(
      () => existsSync(backupDir) && readdirSync(backupDir).some((f) => f.endsWith('.img.zst.part')),
      'the copy under way',
      15_000,
    );
    await stop();
    expect(readdirSync(backupDir)).toEqual([]);
    expect(t.lvm.find('snap0-image')).toBeUndefined();
    expect(t.ctx.log.lines.some((l) => /^error: daemon: image failed: interrupted/.test(l))).toBe(true);
    expect(t.ctx.log.lines.at(-1)).toBe('info: daemon stopped');
  });
});
