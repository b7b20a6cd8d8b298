import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import {
  CommandError,
  ExitCode,
  exitCodeOf,
  InterruptedError,
  RefusedError,
  VerifyError,
} from '../../src/errors.js';
import { runImageCreate } from '../../src/image/create.js';
import { pidFileOf } from '../../src/image/job.js';
import { readManifest } from '../../src/image/manifest.js';
import { formatImageList, listedImages } from '../../src/image/prune.js';
import { resumeImageRestore, runImageRestore } from '../../src/image/image-restore.js';
import {
  decodeTagText,
  describeUnfinished,
  encodeTagText,
  markOf,
  markTags,
  rootHalfWritten,
  unfinishedImageRestore,
} from '../../src/image/restore-mark.js';
import { runImageVerify } from '../../src/image/verify.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { memoryLogger } from '../../src/log/logger.js';
import { VERSION } from '../../src/version.js';
import { DRY_RUN_DONE } from '../../src/plan/plan.js';
import { writesFor } from '../../src/system/writes.js';
import { FakeClock, type TestContext, tempDir, testContext, waitFor } from './helpers/context.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { catInImage, HybridRunner, makeExt4, makeOrphan, sh, zeroFileBlocks } from './helpers/image-tools.js';
import { epoch, type LvRow, MiB } from './helpers/lvm-json.js';

// Whole image jobs with the real e2image, zstd, e2fsck, debugfs, dd and resize2fs on a real ext4
// file system kept in a plain file; LVM is the fake (device-mapper does not work here), and the
// device paths zshield uses are mapped onto the file.

const NOW = new Date('2026-03-01T04:00:00Z');
const SNAP_TIME = new Date('2026-03-01T03:00:02Z');
const KIND = 'appliance7';
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 64 * MiB, major: 253, minor: 200 };
const SNAP0: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 16 * MiB,
  origin: 'lv-root',
  snapPercent: '1.00',
  tags: ['zshield_reason=daily', `zshield_time=${epoch(SNAP_TIME)}`],
  minor: 201,
};

/** An image's file system, unpacked by hand as a restore reads it. */
/** Damage made before the checksum was taken: the `.sha256` and the manifest describe the bytes as they are now. */
function sumsAgreeWith(image: string): void {
  const sum = sh('sha256sum', [image]).split(' ')[0]!;
  const b = path.basename(image, '.img.zst');
  writeFileSync(path.join(path.dirname(image), `${b}.sha256`), `${sum}  ${b}.img.zst\n`);
  const mf = path.join(path.dirname(image), `${b}.manifest.json`);
  writeFileSync(mf, JSON.stringify({ ...readManifest(mf), checksums: { sha256: sum } }));
}

function unpack(image: string, raw: string): void {
  sh('sh', ['-c', `zstd -d -q -f --sparse -o '${raw}' '${image}'`]);
}

/** The same world seen by a dry run (--dry-run): its own output, writes refused. */
function dryRunOf(ctx: TestContext): TestContext {
  const printed: string[] = [];
  return {
    ...ctx,
    dryRun: true,
    writes: writesFor(true),
    log: memoryLogger(),
    printed,
    out: { print: (l: string) => printed.push(l) },
  };
}

interface JsonStep {
  title: string;
  when?: string;
  argv?: string[];
  pipeline?: string[][];
  edit?: string[];
}

/** The commands a printed plan (--dry-run --json) says will run, as the runner records them. */
function printedCommands(json: string, part: 'steps' | 'always'): { line: string; when?: string }[] {
  const plan = JSON.parse(json) as Record<'steps' | 'always', JsonStep[] | undefined>;
  return (plan[part] ?? [])
    .filter((s) => !s.edit)
    .map((s) => ({
      line: s.pipeline ? s.pipeline.map((a) => a.join(' ')).join(' | ') : s.argv!.join(' '),
      ...(s.when ? { when: s.when } : {}),
    }));
}

describe('image jobs with the real tools', () => {
  let dir: string;
  let cleanup: () => void;
  let fsFile: string;
  let backupDir: string;

  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-image-'));
    fsFile = path.join(dir, 'lv-root.ext4');
    backupDir = path.join(dir, 'diskbackup');
  });
  afterEach(() => cleanup());

  function setup(opts: { lvs?: LvRow[]; edit?: (c: Config) => void; devices?: Record<string, string> } = {}) {
    const lvm = new FakeLvm({ lvs: opts.lvs ?? [ROOT, SNAP0] });
    lvm.createTime = epoch(NOW);
    const abort = new AbortController();
    const devices = new Map(
      Object.entries(
        opts.devices ?? {
          '/dev/vgroup/lv-root': fsFile,
          '/dev/vgroup/snap0': fsFile,
          '/dev/vgroup/snap0-image': fsFile,
        },
      ),
    );
    const ctxHolder: { ctx?: TestContext } = {};
    const recording = lvm.install(new RecordingRunner());
    // vgchange -ay (activation from the golden medium) is not a change the fake needs to model.
    recording.on((a) => a[0] === 'vgchange' && a[1] === '-ay', {});
    const log = { current: null as TestContext['log'] | null };
    const ctx = testContext({
      runner: recording,
      dir,
      clock: new FakeClock(NOW),
      edit: (c) => {
        c.image.dir = backupDir;
        opts.edit?.(c);
      },
    });
    log.current = ctx.log;
    const runner = new HybridRunner(recording, devices, { log: ctx.log, signal: abort.signal });
    ctx.runner = runner;
    ctx.signal = abort.signal;
    ctxHolder.ctx = ctx;
    return { ctx, runner, lvm, abort };
  }

  const files = () => (existsSync(backupDir) ? readdirSync(backupDir).sort() : []);
  const base = (t: Date) =>
    `zshield-${KIND}-${t
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z')
      .replace(/[-:]/g, '')}`;

  it('create (temporary snapshot): a verified image, its checksum and manifest; the snapshot is gone', async () => {
    makeExt4(fsFile);
    const t = setup();
    const outcome = await runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    const b = base(NOW);
    expect(outcome!.image).toBe(path.join(backupDir, `${b}.img.zst`));
    expect(files()).toEqual([`${b}.img.zst`, `${b}.manifest.json`, `${b}.sha256`]);

    // The calls, in order, as zshield made them (device paths before the test's mapping).
    const calls = t.runner.calls.filter((c) => !/^(lvs|vgs|blkid|dumpe2fs) /.test(c));
    expect(calls).toEqual([
      expect.stringMatching(
        /^lvcreate --snapshot --name snap0-image --size \d+b --addtag zshield_reason=image /,
      ),
      // The job's own snapshot is checked (repaired as a restore would) before it is read...
      'e2fsck -f -y /dev/vgroup/snap0-image',
      'debugfs -R stat "/etc/fstab" /dev/vgroup/snap0-image',
      // ...then read once: compressed, written and hashed in the same pass.
      `dd if=/dev/vgroup/snap0-image bs=4M iflag=count_bytes count=${32 * MiB} status=progress | zstd -T0 -q --check -c | tee ${backupDir}/${b}.img.zst.part | sha256sum`,
      'lvremove --yes vgroup/snap0-image',
    ]);
    expect(t.lvm.find('snap0-image')).toBeUndefined();
    expect(existsSync(pidFileOf(t.ctx.config.paths.runDir))).toBe(false);

    const m = readManifest(path.join(backupDir, `${b}.manifest.json`));
    const blkid = sh('blkid', ['-p', '-o', 'export', fsFile]);
    expect(m).toMatchObject({
      format: 'zshield-image/1',
      image: `${b}.img.zst`,
      agent: { name: 'zshield', version: VERSION },
      host: { kind: KIND },
      source: {
        vg: 'vgroup',
        lv: 'lv-root',
        snapshot: 'snap0-image',
        kind: 'temporary',
        snapshotTime: NOW.toISOString(),
        snapshotReason: 'image',
        lvSizeBytes: 64 * MiB,
      },
      filesystem: { type: 'ext4', uuid: /UUID=(.*)/.exec(blkid)![1], blockSize: 4096, sizeBytes: 32 * MiB },
      compression: { format: 'zstd', command: ['zstd', '-T0', '-q', '--check'], frameChecksum: true },
      archive: null,
      identity: null,
      sizes: { imageBytes: statSync(outcome!.image).size, rawBytes: 32 * MiB },
      verification: { fsck: 'clean', contains: ['/etc/fstab'], tries: 1 },
    });
    expect(m.filesystem.usedBytes).toBeGreaterThan(512 * 1024);
    // Compressed: far smaller than the file system, about the size of the (incompressible) data.
    expect(m.sizes.imageBytes).toBeLessThan(4 * MiB);
    expect(m.checksums.sha256).toBe(sh('sha256sum', [outcome!.image]).split(' ')[0]);
    expect(sh('sh', ['-c', `cd '${backupDir}' && sha256sum -c ${b}.sha256`])).toBe(`${b}.img.zst: OK\n`);
    // What it holds is the file system: unpacked by hand, it is the same system.
    const raw = path.join(dir, 'check.raw');
    unpack(outcome!.image, raw);
    expect(catInImage(raw, '/etc/hostname')).toBe('appliance7\n');
    expect(catInImage(raw, '/usr/bin/appliance-daemon')).toBe(
      catInImage(fsFile, '/usr/bin/appliance-daemon'),
    );

    const v = await runImageVerify(t.ctx, outcome!.image, { quick: false });
    expect(v.content).toEqual({ fsck: 'clean', rawBytes: 32 * MiB, contains: ['/etc/fstab'] });
    expect(files()).toHaveLength(3); // the verification's copy is gone
    expect(formatImageList(backupDir, listedImages(backupDir))).toMatch(
      new RegExp(`${NOW.toISOString()}  ${KIND} .* vgroup/snap0-image \\(image\\), fsck clean$`, 'm'),
    );
    expect(JSON.parse(readFileSync(path.join(dir, 'state', 'last-image.json'), 'utf8'))).toMatchObject({
      result: 'ok',
      tries: 1,
    });
  });

  it('the LVM lock: not held during a copy from the temporary snapshot, held while snap0 is read', async () => {
    makeExt4(fsFile);
    const ownerFile = (ctx: TestContext) => path.join(ctx.config.paths.runDir, 'lvm.lock.owner');
    const temp = setup();
    let heldTemp: boolean | null = null;
    temp.runner.beforePipeline = (p) => {
      if (/^(e2image|dd)$/.test(p.stages[0]!.file)) heldTemp = existsSync(ownerFile(temp.ctx));
    };
    await runImageCreate(temp.ctx, { waitMs: 0, kind: KIND });
    expect(heldTemp).toBe(false);

    const snap = setup();
    let owner: { purpose: string } | null = null;
    snap.runner.beforePipeline = (p) => {
      if (/^(e2image|dd)$/.test(p.stages[0]!.file))
        owner = JSON.parse(readFileSync(ownerFile(snap.ctx), 'utf8'));
    };
    const out = await runImageCreate(snap.ctx, { waitMs: 0, kind: KIND, source: 'snap0' });
    expect(owner).toMatchObject({ purpose: 'image (snap0)' });
    expect(out!.image).toBe(path.join(backupDir, `${base(SNAP_TIME)}.img.zst`));
    expect(snap.runner.calls.some((c) => c.startsWith('lvcreate'))).toBe(false);
    expect(readManifest(path.join(backupDir, `${base(SNAP_TIME)}.manifest.json`)).source).toMatchObject({
      snapshot: 'snap0',
      kind: 'snap0',
      snapshotReason: 'daily',
    });
    // The same snapshot again: refused, the existing image untouched.
    const again = setup();
    await expect(runImageCreate(again.ctx, { waitMs: 0, kind: KIND, source: 'snap0' })).rejects.toThrow(
      /an image of this snapshot already exists/,
    );
    expect(existsSync(out!.image)).toBe(true);
  });

  it('verify: a flipped byte fails the checksum; a damaged image with matching sums fails to unpack', async () => {
    makeExt4(fsFile);
    const t = setup();
    const { image } = (await runImageCreate(t.ctx, { waitMs: 0, kind: KIND }))!;
    const good = readFileSync(image);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)]! ^= 0x01;
    writeFileSync(image, bad);
    const e1 = await runImageVerify(t.ctx, image, { quick: true }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(VerifyError);
    expect(exitCodeOf(e1)).toBe(ExitCode.verifyFailed);
    expect((e1 as Error).message).toMatch(/does not match its checksum/);

    // Damage that happened before the checksum was taken: the sums agree, zstd's own frame
    // checksum (or its decoder) does not, and neither does the file system check.
    sumsAgreeWith(image);
    await runImageVerify(t.ctx, image, { quick: true }); // the sums alone cannot see it
    const e2 = await runImageVerify(t.ctx, image, { quick: false }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(VerifyError);
    expect((e2 as Error).message).toMatch(/^image verification failed: (zstd|tar) failed/);
    expect(files().filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('an attempt whose stream breaks is retried (image.tries); the image made by the next is good', async () => {
    makeExt4(fsFile);
    const t = setup({ edit: (c) => (c.image.tries = 2) });
    let streams = 0;
    // The first attempt's compressor dies mid-stream (a bad memory page, a killed process).
    t.runner.rewriteStages = (stages) =>
      stages[0]!.file === 'dd' && ++streams === 1
        ? stages.map((s) =>
            s.file === 'zstd'
              ? { file: 'sh', args: ['-c', 'head -c 4096 >/dev/null; exit 3'], mutates: false }
              : s,
          )
        : [...stages];
    const out = await runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    expect(out!.tries).toBe(2);
    expect(streams).toBe(2);
    expect(
      t.ctx.log.lines.some((l) => /^warn: image: attempt 1 of 2 failed: sh failed \(exit 3\)/.test(l)),
    ).toBe(true);
    expect(t.runner.calls.filter((c) => c.startsWith('lvcreate'))).toHaveLength(2);
    expect(t.runner.calls.filter((c) => c.startsWith('lvremove'))).toHaveLength(2);
    expect(readManifest(out!.image.replace(/\.img\.zst$/, '.manifest.json')).verification.tries).toBe(2);
    await runImageVerify(t.ctx, out!.image, { quick: false });
  });

  it('with one try, a snapshot e2fsck cannot repair leaves no file and no snapshot behind (exit 10)', async () => {
    makeExt4(fsFile);
    const t = setup();
    const realRun = t.runner.run.bind(t.runner);
    t.runner.run = async (cmd) => {
      if (cmd.file !== 'e2fsck') return realRun(cmd);
      t.runner.calls.push([cmd.file, ...cmd.args].join(' '));
      // e2fsck's exit 4: errors left uncorrected.
      throw new CommandError({
        argv: [cmd.file, ...cmd.args],
        code: 4,
        signal: undefined,
        stdout: '',
        stderr: '',
      });
    };
    const err = await runImageCreate(t.ctx, { waitMs: 0, kind: KIND }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VerifyError);
    expect((err as Error).message).toBe(
      'image verification failed: e2fsck cannot repair the file system in the image',
    );
    expect(exitCodeOf(err)).toBe(10);
    // Nothing was read: the check comes before the copy.
    expect(t.runner.calls.some((c) => /^(e2image|dd) /.test(c))).toBe(false);
    expect(files()).toEqual([]);
    expect(t.lvm.find('snap0-image')).toBeUndefined();
    expect(existsSync(pidFileOf(t.ctx.config.paths.runDir))).toBe(false);
    expect(JSON.parse(readFileSync(path.join(dir, 'state', 'last-image.json'), 'utf8'))).toMatchObject({
      result: 'failed',
      tries: 1,
    });
  });

  it('an orphan inode (a snapshot of a running system): the job\'s own snapshot is repaired as a restore would before it is read; fsck "corrected"', async () => {
    makeExt4(fsFile);
    makeOrphan(fsFile, '/usr/bin/appliance-daemon');
    expect(spawnSync('e2fsck', ['-f', '-n', fsFile]).status).toBe(4);
    const t = setup();
    const out = await runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    expect(t.runner.calls.filter((c) => c.startsWith('e2fsck'))).toEqual([
      'e2fsck -f -y /dev/vgroup/snap0-image',
    ]);
    expect(out!.manifest.verification.fsck).toBe('corrected');
    expect(t.ctx.log.lines).toContain(
      'warn: image: the file system needed what e2fsck -fy does at a restore (journal replay or orphan inodes); a restore makes the same corrections',
    );
    // The image holds the repaired file system (only the job's snapshot was written, never lv-root:
    // here one file stands in for both).
    const check = path.join(dir, 'check.raw');
    unpack(out!.image, check);
    expect(spawnSync('e2fsck', ['-f', '-n', check]).status).toBe(0);
  });

  it('a file system that is not a system (no /etc/fstab) does not verify', async () => {
    makeExt4(fsFile, { fstab: false });
    const t = setup();
    await expect(runImageCreate(t.ctx, { waitMs: 0, kind: KIND })).rejects.toThrow(
      'image verification failed: the image holds no /etc/fstab; it is not a system',
    );
    expect(files()).toEqual([]);
  });

  it('SIGTERM during the copy: stops, removes the partial image and the temporary snapshot (exit 9)', async () => {
    makeExt4(fsFile);
    const t = setup();
    // A slow source: the file system's bytes, then a stall (a slow disk under dd).
    t.runner.rewriteStages = (stages) =>
      stages[0]!.file === 'dd'
        ? [
            { file: 'sh', args: ['-c', `cat '${fsFile}'; exec sleep 3600`], mutates: false },
            ...stages.slice(1),
          ]
        : [...stages];
    const run = runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    const part = path.join(backupDir, `${base(NOW)}.img.zst.part`);
    await waitFor(() => existsSync(part) && statSync(part).size > 0, 'the partial image');
    expect(t.lvm.find('snap0-image')).toBeDefined();
    expect(readFileSync(pidFileOf(t.ctx.config.paths.runDir), 'utf8').trim()).toBe(String(process.pid));
    t.abort.abort();
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(exitCodeOf(err)).toBe(9);
    expect(files()).toEqual([]);
    expect(t.lvm.find('snap0-image')).toBeUndefined();
    expect(t.runner.calls.at(-1)).toBe('lvremove --yes vgroup/snap0-image');
    expect(existsSync(pidFileOf(t.ctx.config.paths.runDir))).toBe(false);
  });

  it('leftovers of a job that died are cleaned before the next one; a running job keeps others out', async () => {
    makeExt4(fsFile);
    const left: LvRow = {
      ...SNAP0,
      name: 'snap0-image',
      tags: ['zshield_reason=image', 'zshield_time=1'],
      minor: 9,
    };
    const t = setup({ lvs: [ROOT, SNAP0, left] });
    sh('mkdir', ['-p', backupDir]);
    writeFileSync(path.join(backupDir, `zshield-${KIND}-20260101T000000Z.img.zst.part`), 'half');
    writeFileSync(path.join(backupDir, 'zshield-other-20260101T000000Z.img.zst.part'), 'not ours to judge');
    // A dead job's pid file.
    sh('mkdir', ['-p', t.ctx.config.paths.runDir]);
    writeFileSync(pidFileOf(t.ctx.config.paths.runDir), '999999\n');
    await runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    expect(files()).toEqual([
      `${base(NOW)}.img.zst`,
      `${base(NOW)}.manifest.json`,
      `${base(NOW)}.sha256`,
      'zshield-other-20260101T000000Z.img.zst.part',
    ]);
    expect(t.runner.calls.filter((c) => c.startsWith('lv') && !c.startsWith('lvs'))).toEqual([
      'lvremove --yes vgroup/snap0-image',
      expect.stringMatching(/^lvcreate /),
      'lvremove --yes vgroup/snap0-image',
    ]);

    // A live job (this very process, as another would be) holds the pid file: a second is refused.
    const busy = setup();
    const sleeper = spawnSync('sh', ['-c', 'sleep 30 >/dev/null 2>&1 & echo $!'], { encoding: 'utf8' });
    const pid = Number(sleeper.stdout.trim());
    try {
      writeFileSync(pidFileOf(busy.ctx.config.paths.runDir), `${pid}\n`);
      const err = await runImageCreate(busy.ctx, { waitMs: 0, kind: KIND }).catch((e: unknown) => e);
      expect(exitCodeOf(err)).toBe(ExitCode.busy);
      expect((err as Error).message).toMatch(new RegExp(`an image job is running \\(pid ${pid}`));
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('keeps image.keep images of this host after a new one', async () => {
    makeExt4(fsFile);
    sh('mkdir', ['-p', backupDir]);
    for (const d of ['20260101', '20260102', '20260103']) {
      for (const e of ['img.zst', 'sha256', 'manifest.json'])
        writeFileSync(path.join(backupDir, `zshield-${KIND}-${d}T030000Z.${e}`), 'old');
    }
    writeFileSync(path.join(backupDir, 'zshield-other-20250101T030000Z.img.zst'), 'another host');
    writeFileSync(path.join(backupDir, 'README'), 'not ours');
    const t = setup({ edit: (c) => (c.image.keep = 2) });
    const out = await runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    expect(out!.pruned.map((p) => path.basename(p)).sort()).toEqual(
      ['20260101', '20260102'].flatMap((d) =>
        ['img.zst', 'manifest.json', 'sha256'].map((e) => `zshield-${KIND}-${d}T030000Z.${e}`),
      ),
    );
    expect(files()).toEqual([
      'README',
      `zshield-${KIND}-20260103T030000Z.img.zst`,
      `zshield-${KIND}-20260103T030000Z.manifest.json`,
      `zshield-${KIND}-20260103T030000Z.sha256`,
      `${base(NOW)}.img.zst`,
      `${base(NOW)}.manifest.json`,
      `${base(NOW)}.sha256`,
      'zshield-other-20250101T030000Z.img.zst',
    ]);
  });

  it('--hostname/--ip: the files of the mounted snapshot are rewritten, then it is unmounted; a symlink out of it is refused', async () => {
    makeExt4(fsFile);
    const t = setup();
    const mnt = path.join(t.ctx.config.paths.runDir, 'image-identity');
    // mount and umount are recorded, not run: the "mounted snapshot" is a directory made here.
    const realRun = t.runner.run.bind(t.runner);
    const mounted: string[] = [];
    t.runner.run = async (cmd) => {
      if (cmd.file === 'mount' || cmd.file === 'umount') {
        mounted.push([cmd.file, ...cmd.args].join(' '));
        t.runner.calls.push(mounted.at(-1)!);
        if (cmd.file === 'mount') {
          mkdirSync(path.join(mnt, 'etc', 'network'), { recursive: true });
          writeFileSync(path.join(mnt, 'etc', 'hostname'), 'appliance7\n');
          writeFileSync(path.join(mnt, 'etc', 'hosts'), '127.0.0.1 localhost\n127.0.1.1 appliance7\n');
          writeFileSync(
            path.join(mnt, 'etc', 'network', 'interfaces'),
            'iface eth0 inet static\n  address 10.0.2.15\n  netmask 255.255.255.0\n',
          );
        }
        return { argv: [cmd.file, ...cmd.args], exitCode: 0, stdout: '', stderr: '', skipped: false };
      }
      return realRun(cmd);
    };
    const out = await runImageCreate(t.ctx, {
      waitMs: 0,
      identity: { hostname: 'standby-7', ip: '10.0.2.77' },
    });
    // The second umount is the plan's `always` part: after a success it finds nothing mounted.
    expect(mounted).toEqual([
      `mount -t ext4 -o nodev,nosuid,noexec /dev/vgroup/snap0-image ${mnt}`,
      `umount ${mnt}`,
      `umount ${mnt}`,
    ]);
    expect(readFileSync(path.join(mnt, 'etc', 'hostname'), 'utf8')).toBe('standby-7\n');
    expect(readFileSync(path.join(mnt, 'etc', 'hosts'), 'utf8')).toBe(
      '127.0.0.1 localhost\n127.0.1.1\tstandby-7\n',
    );
    expect(readFileSync(path.join(mnt, 'etc', 'network', 'interfaces'), 'utf8')).toBe(
      'iface eth0 inet static\n  address 10.0.2.77\n  netmask 255.255.255.0\n',
    );
    expect(path.basename(out!.image)).toMatch(/^zshield-standby-7-/);
    expect(out!.manifest.identity).toEqual({ hostname: 'standby-7', ip: '10.0.2.77' });
    const order = t.runner.calls
      .filter((c) => /^(lvcreate|mount|umount|dd|lvremove)/.test(c))
      .map((c) => c.split(' ')[0]);
    expect(order).toEqual(['lvcreate', 'mount', 'umount', 'dd', 'lvremove', 'umount']);

    // An image whose etc is a symlink to a directory outside it: nothing outside is written.
    const outside = path.join(dir, 'outside-etc');
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(outside, 'hostname'), 'host-system\n');
    const t2 = setup();
    const real2 = t2.runner.run.bind(t2.runner);
    const seen: string[] = [];
    t2.runner.run = async (cmd) => {
      if (cmd.file === 'mount' || cmd.file === 'umount') {
        seen.push(cmd.file);
        if (cmd.file === 'mount') {
          rmSync(mnt, { recursive: true, force: true });
          mkdirSync(mnt, { recursive: true });
          symlinkSync(outside, path.join(mnt, 'etc'));
        }
        return { argv: [cmd.file, ...cmd.args], exitCode: 0, stdout: '', stderr: '', skipped: false };
      }
      return real2(cmd);
    };
    const err = await runImageCreate(t2.ctx, {
      waitMs: 0,
      identity: { hostname: 'standby-8', ip: null },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toBe(
      "the image's /etc leads outside it (a symlink): its identity is not changed",
    );
    expect(readFileSync(path.join(outside, 'hostname'), 'utf8')).toBe('host-system\n');
    expect(seen).toEqual(['mount', 'umount']);
    expect(t2.lvm.find('snap0-image')).toBeUndefined();
  });

  it('dry-run: shows the plan, makes nothing', async () => {
    makeExt4(fsFile);
    const t = setup();
    t.ctx.dryRun = true;
    expect(await runImageCreate(t.ctx, { waitMs: 0, kind: KIND })).toBeNull();
    expect(t.ctx.printed[0]).toMatch(/^Image vgroup\/lv-root \(from a temporary snapshot\) to /);
    expect(t.ctx.printed[0]).toContain('$ dd if=/dev/vgroup/snap0-image bs=4M iflag=count_bytes count=');
    expect(t.ctx.printed[0]).toContain(' status=progress | zstd -T0 -q --check -c | tee ');
    expect(t.runner.calls.every((c) => /^(lvs|vgs|blkid|dumpe2fs) /.test(c))).toBe(true);
    expect(existsSync(backupDir)).toBe(false);
    expect(existsSync(pidFileOf(t.ctx.config.paths.runDir))).toBe(false);
  });

  it('create --dry-run --json prints the complete plan; a run applies exactly the printed steps', async () => {
    makeExt4(fsFile);
    const dry = setup();
    dry.ctx.dryRun = true;
    await runImageCreate(dry.ctx, { waitMs: 0, kind: KIND, json: true });
    const json = dry.ctx.printed.join('\n');
    const steps = printedCommands(json, 'steps');
    const always = printedCommands(json, 'always');
    expect(steps.map((s) => s.line.split(' ')[0])).toEqual([
      'lvcreate',
      'e2fsck',
      'debugfs',
      'blkid',
      'dumpe2fs',
      'dd',
      'lvremove',
    ]);
    expect(always.map((s) => s.line)).toEqual(['lvremove --yes vgroup/snap0-image']);

    const t = setup();
    await runImageCreate(t.ctx, { waitMs: 0, kind: KIND });
    // Before the first step: the probes that made the plan (read-only).
    const first = t.runner.calls.indexOf(steps[0]!.line);
    expect(t.runner.calls.slice(0, first).every((c) => /^(lvs|vgs|blkid|dumpe2fs) /.test(c))).toBe(true);
    // Then the printed steps, in order; the `always` removal found nothing left (its condition, shown).
    expect(t.runner.calls.slice(first).filter((c) => !/^(lvs|vgs) /.test(c))).toEqual(
      steps.map((s) => s.line),
    );
    expect(always[0]!.when).toMatch(/^if it is still there/);
  });

  describe('restore', () => {
    const target = () => path.join(dir, 'target-lv-root');
    async function makeImage(): Promise<string> {
      makeExt4(fsFile, { hostname: 'from-the-image' });
      expect(zeroFileBlocks(fsFile, '/var/lib/table.db')).toBe(3072);
      const t = setup();
      return (await runImageCreate(t.ctx, { waitMs: 0, kind: KIND }))!.image;
    }
    /**
     * The same image in the layout of the previous version (tar --sparse of the raw file system,
     * compressed), with its checksum and manifest: images made before still restore.
     */
    function toTarLayout(image: string): string {
      const raw = path.join(dir, 'filesystem.raw');
      sh('sh', [
        '-c',
        `zstd -d -q -f --sparse -o '${raw}' '${image}' && tar --sparse -cf - -C '${dir}' filesystem.raw | zstd -q --check -f -o '${image}'`,
      ]);
      const mf = image.replace(/\.img\.zst$/, '.manifest.json');
      const m = readManifest(mf);
      const archive = { format: 'tar-sparse', member: 'filesystem.raw' };
      writeFileSync(
        mf,
        JSON.stringify({ ...m, archive, sizes: { ...m.sizes, imageBytes: statSync(image).size } }),
      );
      sumsAgreeWith(image);
      rmSync(raw);
      return image;
    }
    /** lv-root as the golden medium sees it: not mounted, full of old bytes (0xff, not zeros). */
    // The mark and what a resume needs, set and cleared by one vgchange each (the file system's
    // tag only where the host's findmnt and blkid name one for the test's folder).
    const MARK_TAGS = (op: string) =>
      `${op} zshield_image_restore=[0-9a-f]{8} ${op} zshield_image_sha256=[0-9a-f]{64} ${op} zshield_image_file=\\S+ (${op} zshield_image_src=\\S+ )?${op} zshield_image_started=\\d+`;
    const MARK_SET = new RegExp(`^vgchange ${MARK_TAGS('--addtag')} vgroup$`);
    const MARK_CLEAR = new RegExp(`^vgchange ${MARK_TAGS('--deltag')} vgroup$`);

    function targetSetup(sizeMiB: number) {
      writeFileSync(target(), Buffer.alloc(sizeMiB * MiB, 0xff));
      return setup({
        lvs: [{ ...ROOT, attr: 'owi-a-s---', size: sizeMiB * MiB }, SNAP0],
        devices: { '/dev/vgroup/lv-root': target() },
      });
    }

    /** blkdiscard --zeroout needs a block device: for the file standing in for lv-root, the same effect. */
    function zerooutByHand(t: ReturnType<typeof targetSetup>, sizeMiB: number): void {
      const realRun = t.runner.run.bind(t.runner);
      t.runner.run = async (cmd) => {
        if (cmd.file !== 'blkdiscard') return realRun(cmd);
        t.runner.calls.push([cmd.file, ...cmd.args].join(' '));
        writeFileSync(target(), Buffer.alloc(sizeMiB * MiB));
        return { argv: [cmd.file, ...cmd.args], exitCode: 0, stdout: '', stderr: '', skipped: false };
      };
    }

    /** The target is a clean file system of the LV's size holding the image's system. */
    function expectRestored(t: ReturnType<typeof targetSetup>): void {
      expect(spawnSync('e2fsck', ['-f', '-n', target()]).status).toBe(0);
      expect(catInImage(target(), '/etc/hostname')).toBe('from-the-image\n');
      // Allocated blocks of zeros are zeros (the LV was zeroed first; the image leaves them out,
      // and without that they would still hold the old 0xff).
      expect(catInImage(target(), '/var/lib/table.db') === '\0'.repeat(12 * MiB)).toBe(true);
      expect(sh('dumpe2fs', ['-h', target()])).toMatch(
        new RegExp(`^Block count:\\s+${(48 * MiB) / 4096}$`, 'm'),
      );
      expect(t.ctx.printed.at(-1)).toMatch(
        /^image restore done: vgroup\/lv-root now holds zshield-appliance7-/,
      );
    }

    it('restore --dry-run --json prints the complete plan; --yes applies exactly the printed steps', async () => {
      const image = await makeImage();
      const dry = targetSetup(48);
      dry.ctx.dryRun = true;
      expect(await runImageRestore(dry.ctx, image, { confirm: 'ask', json: true, waitMs: 0 })).toBeNull();
      const json = dry.ctx.printed.join('\n');
      expect(JSON.parse(json).title).toMatch(/^Restore vgroup\/lv-root from /);
      expect(dry.runner.calls.every((c) => /^(lvs|vgs|findmnt|blkid) /.test(c))).toBe(true);
      const steps = printedCommands(json, 'steps').map((s) => s.line);
      // A new image streams into the LV: no unpacked copy, nothing to clean up after.
      expect(JSON.parse(json).always).toBeUndefined();

      const t = targetSetup(48);
      zerooutByHand(t, 48);
      await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 });
      const ran = t.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid) /.test(c));
      // The printed steps, then the post-restore backup (its own plan, shown when it runs).
      expect(ran.slice(0, steps.length)).toEqual(steps);
      expect(ran.slice(steps.length)).toEqual([expect.stringMatching(/^lvcreate --snapshot --name snap0 /)]);
    });

    it('an inactive VG (seen from the golden medium) is activated by the plan, never by a dry run', async () => {
      const image = await makeImage();
      writeFileSync(target(), Buffer.alloc(48 * MiB, 0xff));
      const inactive = () =>
        setup({
          lvs: [{ ...ROOT, attr: 'owi---s---', size: 48 * MiB }, SNAP0],
          devices: { '/dev/vgroup/lv-root': target() },
        });
      const dry = inactive();
      dry.ctx.dryRun = true;
      await runImageRestore(dry.ctx, image, { confirm: 'ask', waitMs: 0 });
      expect(dry.ctx.printed[0]).toContain('$ vgchange -ay vgroup');
      expect(dry.runner.calls.some((c) => c.startsWith('vgchange'))).toBe(false);
      const t = inactive();
      zerooutByHand(t, 48);
      await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 });
      expect(t.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid) /.test(c))[0]).toBe(
        'vgchange -ay vgroup',
      );
    });

    it('streams a new image into the zeroed LV in one pass (its checksum checked before the first write), checks, grows the file system, takes a new snap0', async () => {
      const image = await makeImage();
      const t = targetSetup(48);
      zerooutByHand(t, 48);
      await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 });
      expect(t.ctx.printed[0]).toContain(
        `its SHA-256 was checked against ${image.replace(/\.img\.zst$/, '.sha256')} before anything was written`,
      );
      expect(t.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid) /.test(c))).toEqual([
        expect.stringMatching(MARK_SET),
        'lvremove --yes vgroup/snap0',
        'blkdiscard --zeroout --force /dev/vgroup/lv-root',
        `zstd -d -c -q ${image} | dd of=/dev/vgroup/lv-root bs=1M iflag=fullblock conv=sparse,notrunc,fsync status=progress`,
        'e2fsck -f -y /dev/vgroup/lv-root',
        `resize2fs /dev/vgroup/lv-root ${48 * 1024}K`,
        expect.stringMatching(MARK_CLEAR),
        expect.stringMatching(/^lvcreate --snapshot --name snap0 .*--addtag zshield_reason=post-restore /),
      ]);
      expectRestored(t);
    });

    it('an image of the previous (tar) layout: unpacks a sparse copy, then zeroes the LV, writes the blocks in use, checks, grows the file system to the LV, takes a new snap0', async () => {
      const image = toTarLayout(await makeImage());
      const t = targetSetup(48);
      zerooutByHand(t, 48);
      const asked = await runImageRestore(t.ctx, image, { confirm: 'ask', waitMs: 0 }).catch(
        (e: unknown) => e,
      );
      expect(asked).toBeInstanceOf(RefusedError);
      // The operator's one line (the bench checks it as printed).
      expect((asked as Error).message).toBe('the image restore was not started: it needs confirmation');
      expect(t.runner.calls.some((c) => c.startsWith('lvremove') || /^(zstd|e2image|dd) /.test(c))).toBe(
        false,
      );

      const r = await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 });
      const raw = image.replace(/\.img\.zst$/, '.raw.part');
      expect(t.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid) /.test(c))).toEqual([
        `zstd -d -c -q ${image} | tar -x --sparse -f - -C ${path.dirname(image)} --transform=s,.*,${path.basename(raw)},`,
        expect.stringMatching(MARK_SET),
        'lvremove --yes vgroup/snap0',
        'blkdiscard --zeroout --force /dev/vgroup/lv-root',
        `e2image -ra -p ${raw} /dev/vgroup/lv-root`,
        'e2fsck -f -y /dev/vgroup/lv-root',
        `resize2fs /dev/vgroup/lv-root ${48 * 1024}K`,
        expect.stringMatching(MARK_CLEAR),
        expect.stringMatching(/^lvcreate --snapshot --name snap0 .*--addtag zshield_reason=post-restore /),
      ]);
      // The unpacked copy was a work file.
      expect(existsSync(raw)).toBe(false);
      expect(r!.backup).toMatchObject({ snapshot: 'vgroup/snap0', reason: 'post-restore' });
      // Run from the golden medium: no last-backup record of the system running this is written.
      expect(existsSync(path.join(dir, 'boot', 'last-backup.json'))).toBe(false);
      expect(existsSync(path.join(dir, 'state', 'last-backup.json'))).toBe(false);
      expectRestored(t);
    });

    it('an image of the tar layout without room beside it for the copy is streamed into the LV (same result)', async () => {
      const image = toTarLayout(await makeImage());
      // The manifest says how much data the copy would hold; more than any disk here has free.
      const manifestFile = image.replace(/\.img\.zst$/, '.manifest.json');
      const m = readManifest(manifestFile);
      writeFileSync(
        manifestFile,
        JSON.stringify({ ...m, filesystem: { ...m.filesystem, usedBytes: 2 ** 52 } }, null, 2),
      );
      const t = targetSetup(48);
      zerooutByHand(t, 48);
      await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 });
      expect(t.ctx.printed[0]).toContain(`no room for an unpacked copy in ${path.dirname(image)}`);
      expect(t.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid|lvcreate) /.test(c))).toEqual([
        expect.stringMatching(MARK_SET),
        'lvremove --yes vgroup/snap0',
        'blkdiscard --zeroout --force /dev/vgroup/lv-root',
        `zstd -d -c -q ${image} | tar -x -O -f - | dd of=/dev/vgroup/lv-root bs=1M iflag=fullblock conv=sparse,notrunc,fsync status=progress`,
        'e2fsck -f -y /dev/vgroup/lv-root',
        `resize2fs /dev/vgroup/lv-root ${48 * 1024}K`,
        expect.stringMatching(MARK_CLEAR),
      ]);
      expectRestored(t);
    });

    it('an image of the tar layout damaged before its checksum was taken fails at the unpack, before the VG is touched', async () => {
      const image = toTarLayout(await makeImage());
      const buf = readFileSync(image);
      buf[Math.floor(buf.length / 2)]! ^= 0x01;
      writeFileSync(image, buf);
      // The sums agree with the damaged bytes: only zstd's frame checksums can see it.
      sumsAgreeWith(image);
      const t = targetSetup(48);
      const err = await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 }).catch((e: unknown) => e);
      expect(exitCodeOf(err)).toBe(ExitCode.commandFailed);
      expect((err as Error).message).toMatch(/^(zstd|tar) failed/);
      expect(t.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid) /.test(c))).toEqual([
        expect.stringMatching(/^zstd -d -c -q \S+ \| tar -x --sparse /),
      ]);
      expect(readFileSync(target()).every((x) => x === 0xff)).toBe(true);
      expect(existsSync(image.replace(/\.img\.zst$/, '.raw.part'))).toBe(false);
    });

    it('a nearly empty file system takes the sparse layout (tar --sparse inside zstd): made, verified, restored', async () => {
      makeExt4(fsFile, { sizeMiB: 128, dataKiB: 512, hostname: 'from-the-image' });
      const mk = setup();
      const out = (await runImageCreate(mk.ctx, { waitMs: 0, kind: KIND }))!;
      const b = `${backupDir}/${base(NOW)}`;
      expect(mk.runner.calls.filter((c) => /^(e2image|tar) /.test(c))).toEqual([
        `e2image -ra -p /dev/vgroup/snap0-image ${b}.raw.part`,
        `tar --sparse -cf - -C ${backupDir} --transform=s,.*,filesystem.raw, ${path.basename(b)}.raw.part | zstd -T0 -q --check -c | tee ${b}.img.zst.part | sha256sum`,
      ]);
      expect(out.manifest.archive).toEqual({ format: 'tar-sparse', member: 'filesystem.raw' });
      expect(out.manifest.checksums.sha256).toBe(sh('sha256sum', [out.image]).split(' ')[0]);
      expect(files()).toHaveLength(3);
      const v = await runImageVerify(mk.ctx, out.image, { quick: false });
      expect(v.content).toMatchObject({ fsck: 'clean', rawBytes: 128 * MiB });
      const t = targetSetup(160);
      zerooutByHand(t, 160);
      await runImageRestore(t.ctx, out.image, { confirm: 'yes', waitMs: 0 });
      expect(
        t.runner.calls.some((c) => c.startsWith(`e2image -ra -p ${b}.raw.part /dev/vgroup/lv-root`)),
      ).toBe(true);
      expect(spawnSync('e2fsck', ['-f', '-n', target()]).status).toBe(0);
      expect(catInImage(target(), '/etc/hostname')).toBe('from-the-image\n');
    });

    /** A power cut in the write: dd dies with 2 MiB of the image written. */
    function cutTheWrite(t: ReturnType<typeof targetSetup>): void {
      t.runner.rewriteStages = (stages) =>
        stages.at(-1)!.file === 'dd'
          ? [
              ...stages.slice(0, -1),
              {
                file: 'sh',
                args: ['-c', `head -c 2097152 | dd of='${target()}' conv=notrunc 2>/dev/null; exit 137`],
                mutates: true,
              },
            ]
          : [...stages];
    }

    /** The restore's file system as findmnt and blkid would report it: the test's folder on /dev/fake1. */
    function imageOnFakeDevice(t: ReturnType<typeof targetSetup>, uuid: string): string[] {
      const seen: string[] = [];
      const realRun = t.runner.run.bind(t.runner);
      t.runner.run = async (cmd) => {
        const argv = [cmd.file, ...cmd.args];
        const reply = (stdout: string, exitCode = 0) => {
          t.runner.calls.push(argv.join(' '));
          seen.push(argv.join(' '));
          return { argv, exitCode, stdout, stderr: '', skipped: false };
        };
        if (cmd.file === 'findmnt')
          return reply(JSON.stringify({ filesystems: [{ target: dir, source: '/dev/fake1', fsroot: '/' }] }));
        if (cmd.file === 'blkid' && cmd.args.includes('/dev/fake1')) return reply(`${uuid}\n`);
        if (cmd.file === 'blkid' && cmd.args[0] === '-U')
          return reply(cmd.args[1] === uuid ? '/dev/fake1\n' : '', 2);
        // The read-only mount of /dev/fake1: the test's folder seen under the mount point.
        if (cmd.file === 'mount') {
          rmSync(cmd.args.at(-1)!, { recursive: true, force: true });
          symlinkSync(dir, cmd.args.at(-1)!);
          return reply('');
        }
        if (cmd.file === 'umount') {
          rmSync(cmd.args[0]!, { force: true });
          mkdirSync(cmd.args[0]!);
          return reply('');
        }
        return realRun(cmd);
      };
      return seen;
    }

    it('a restore cut short during its write stays marked: the image, its file system and its SHA-256 in the VG tags; the next boot finishes it', async () => {
      const image = await makeImage();
      const t = targetSetup(48);
      zerooutByHand(t, 48);
      imageOnFakeDevice(t, 'a1b2c3d4-0000-4000-8000-00000000000e');
      cutTheWrite(t);
      await expect(runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 })).rejects.toBeInstanceOf(
        CommandError,
      );
      const sha = readManifest(image.replace(/\.img\.zst$/, '.manifest.json')).checksums.sha256;
      const inFs = `/${path.relative(dir, image)}`;
      expect(t.lvm.vg.tags).toEqual([
        `zshield_image_restore=${sha.slice(0, 8)}`,
        `zshield_image_sha256=${sha}`,
        `zshield_image_file=${image}`,
        `zshield_image_src=a1b2c3d4-0000-4000-8000-00000000000e:${inFs}`,
        `zshield_image_started=${epoch(NOW)}`,
      ]);
      // Set by one vgchange (one metadata commit): a cut never leaves half a record.
      expect(t.runner.calls.filter((c) => c.startsWith('vgchange --addtag'))).toHaveLength(1);
      // What status, the boot hook and the backup flow read: nothing but the VG.
      const u = unfinishedImageRestore(t.lvm.vg as { tags: string[] });
      expect(u?.mark).toMatchObject({ image, sha256: sha, source: { pathInFs: inFs } });
      expect(describeUnfinished(u!)).toMatch(
        /^an image restore of .* was cut short: lv-root is half-written; the golden medium's next boot finishes it/,
      );
      expect(rootHalfWritten(t.lvm.vg as { tags: string[] })).toBe(true);
      expect(spawnSync('e2fsck', ['-f', '-n', target()]).status).not.toBe(0);

      // The next boot of the golden medium. Its dry run makes every check the restore makes before
      // its first write (the image's SHA-256 against the record, the VG) and shows the restore's
      // plan; it writes nothing and leaves the mark.
      t.runner.rewriteStages = null;
      const dry = dryRunOf(t.ctx);
      const before = t.runner.calls.length;
      expect(await resumeImageRestore(dry, { waitMs: 0 })).toBe(true);
      expect(dry.printed[0]).toMatch(/^Restore vgroup\/lv-root from \S+\.img\.zst\n/);
      expect(dry.printed[0]).toMatch(/\$ vgchange --deltag zshield_image_restore=/);
      expect(dry.printed.at(-1)).toBe(DRY_RUN_DONE);
      expect(t.runner.calls.slice(before).filter((c) => !/^(vgs|lvs) /.test(c))).toEqual([]);
      expect(dry.log.lines).toContainEqual(expect.stringMatching(/^info: image: computing the SHA-256 of /));
      expect(t.lvm.vg.tags).toHaveLength(5);
      expect(spawnSync('e2fsck', ['-f', '-n', target()]).status).not.toBe(0);
      // A damaged image stops the dry run where it stops the real run (exit 10), before anything.
      const buf = readFileSync(image);
      buf[100]! ^= 0x10;
      writeFileSync(image, buf);
      await expect(resumeImageRestore(dryRunOf(t.ctx), { waitMs: 0 })).rejects.toBeInstanceOf(VerifyError);
      await expect(resumeImageRestore(t.ctx, { waitMs: 0 })).rejects.toBeInstanceOf(VerifyError);
      buf[100]! ^= 0x10;
      writeFileSync(image, buf);
      expect(t.lvm.vg.tags).toHaveLength(5);

      t.ctx.printed.length = 0;
      expect(await resumeImageRestore(t.ctx, { waitMs: 0 })).toBe(true);
      expectRestored(t);
      expect(t.lvm.vg.tags ?? []).toEqual([]);
      expect(await resumeImageRestore(t.ctx, { waitMs: 0 })).toBe(false);
    });

    it("the golden medium's next boot, with nothing mounted, finds the image on its file system by UUID (mounted read-only, then unmounted)", async () => {
      const image = await makeImage();
      const t = targetSetup(48);
      zerooutByHand(t, 48);
      const uuid = 'a1b2c3d4-0000-4000-8000-00000000000e';
      const seen = imageOnFakeDevice(t, uuid);
      cutTheWrite(t);
      await expect(runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 })).rejects.toBeInstanceOf(
        CommandError,
      );
      // As the golden medium sees it after the reboot: the path the restore used is not there.
      const tags = t.lvm.vg.tags!;
      const moved = tags.map((x) =>
        x.startsWith('zshield_image_file=') ? 'zshield_image_file=/run/img/gone.img.zst' : x,
      );
      t.lvm.vg.tags = moved;
      t.runner.rewriteStages = null;
      seen.length = 0;

      // The dry run finds the file system (blkid -U, read-only) and shows the plan: mount it
      // read-only, the restore, unmount; it stops before the mount, its first change.
      const dry = dryRunOf(t.ctx);
      const mnt = path.join(t.ctx.config.paths.runDir, 'image-source');
      expect(await resumeImageRestore(dry, { waitMs: 0 })).toBe(true);
      expect(dry.printed).toHaveLength(2);
      expect(dry.printed[0]).toMatch(
        /^Finish the image restore cut short: write \S+\.img\.zst into vgroup\/lv-root again\n/,
      );
      expect(dry.printed[0]).toContain(`     $ mount -o ro /dev/fake1 ${mnt}\n`);
      expect(dry.printed[0]).toContain(`     $ umount ${mnt}`);
      expect(dry.printed[1]).toBe(DRY_RUN_DONE);
      expect(seen).toEqual([`blkid -U ${uuid}`]);
      expect(existsSync(mnt)).toBe(false);
      // Not found by its path nor by its file system: the dry run fails as the real run does.
      const gone = dryRunOf(t.ctx);
      t.lvm.vg.tags = moved.map((x) => (x.startsWith('zshield_image_src=') ? x.replace(uuid, 'ffff') : x));
      await expect(resumeImageRestore(gone, { waitMs: 0 })).rejects.toThrow(
        /its image is not found at \/run\/img\/gone.img.zst or \/.* on the file system with UUID ffff/,
      );
      t.lvm.vg.tags = moved;
      seen.length = 0;

      expect(await resumeImageRestore(t.ctx, { waitMs: 0 })).toBe(true);
      expect(seen.filter((c) => /^(blkid -U|mount|umount) /.test(c))).toEqual([
        `blkid -U ${uuid}`,
        `mount -o ro /dev/fake1 ${mnt}`,
        `umount ${mnt}`,
      ]);
      expectRestored(t);
      expect(t.lvm.vg.tags ?? []).toEqual([]);
    });

    it('a path outside the characters LVM allows in a tag is recorded escaped and read back as it was', () => {
      const odd = '/media/USB Stick/Bilder #2/zshield-host-20261129T030000Z.img.zst';
      const mark = {
        id: 'abcd0123',
        image: odd,
        source: { fsUuid: '1234-ABCD', pathInFs: '/Bilder #2/zshield-host-20261129T030000Z.img.zst' },
        sha256: 'f'.repeat(64),
        vg: 'vgroup',
        startedAt: '2026-11-29T03:00:00.000Z',
      };
      const tags = markTags(mark);
      for (const t of tags) expect(t).toMatch(/^[A-Za-z0-9._\-+/=!:&#]+$/);
      expect(markOf({ tags, name: 'vgroup' })).toEqual(mark);
      expect(decodeTagText(encodeTagText('é/ü #&x'))).toBe('é/ü #&x');
    });

    it('refuses a corrupted image (exit 10) and one that does not fit (exit 6), touching nothing', async () => {
      const image = await makeImage();
      const small = targetSetup(16);
      const e1 = await runImageRestore(small.ctx, image, { confirm: 'yes', waitMs: 0 }).catch(
        (e: unknown) => e,
      );
      expect(exitCodeOf(e1)).toBe(ExitCode.refused);
      expect((e1 as Error).message).toBe(
        "the image's file system (32.0 MiB) does not fit vgroup/lv-root (16.0 MiB)",
      );
      expect(small.runner.calls.filter((c) => !/^(lvs|vgs|findmnt|blkid) /.test(c))).toEqual([]);

      const buf = readFileSync(image);
      buf[100]! ^= 0x10;
      writeFileSync(image, buf);
      const t = targetSetup(48);
      const e2 = await runImageRestore(t.ctx, image, { confirm: 'yes', waitMs: 0 }).catch((e: unknown) => e);
      expect(e2).toBeInstanceOf(VerifyError);
      expect(exitCodeOf(e2)).toBe(10);
      expect(t.runner.calls).toEqual([]);
      expect(readFileSync(target()).every((b) => b === 0xff)).toBe(true);
    });
  });
});
