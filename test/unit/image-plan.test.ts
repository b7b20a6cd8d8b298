import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import { defaultConfig } from '../../src/config/schema.js';
import { NotFoundError, RefusedError } from '../../src/errors.js';
import { imagePaths } from '../../src/image/files.js';
import type { FsFacts, Manifest } from '../../src/image/manifest.js';
import type { CreateInput } from '../../src/image/create-input.js';
import { planCreate } from '../../src/image/plan-create.js';
import { planRestore } from '../../src/image/plan-restore.js';
import { planVerify } from '../../src/image/plan-verify.js';
import { type Plan, type Step, describeStep, formatPlan, planToJson, toolsOf } from '../../src/plan/plan.js';
import { probeVg } from '../../src/system/lvm.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeLvm } from './helpers/fake-lvm.js';
import { EXTENT, epoch, GiB, type LvRow, MiB } from './helpers/lvm-json.js';

const NOW = new Date('2026-03-01T03:10:00Z');
const SNAP_TIME = new Date('2026-03-01T03:00:04Z');
const ROOT: LvRow = { name: 'lv-root', attr: 'owi-aos---', size: 10 * GiB, major: 253, minor: 1 };
const SNAP0: LvRow = {
  name: 'snap0',
  attr: 'swi-a-s---',
  size: 2 * GiB,
  origin: 'lv-root',
  snapPercent: '3.00',
  tags: ['zshield_reason=daily', `zshield_time=${epoch(SNAP_TIME)}`],
  minor: 2,
};
const FS: FsFacts = {
  type: 'ext4',
  uuid: 'f00d',
  label: null,
  blockSize: 4096,
  blockCount: (10 * GiB) / 4096,
  freeBlocks: (5 * GiB) / 4096,
  sizeBytes: 10 * GiB,
  // Half full: the one-stream layout (below 40 % the sparse one: its own test).
  usedBytes: 5 * GiB,
};

async function state(lvs: LvRow[], freeExtents = 5000) {
  const runner = new FakeLvm({ vg: { freeExtents }, lvs }).install(new RecordingRunner());
  return probeVg(runner, 'vgroup');
}

function input(
  over: Partial<CreateInput> & { state: CreateInput['state'] },
  edit?: (c: Config) => void,
): CreateInput {
  const config = defaultConfig();
  edit?.(config);
  return {
    config,
    source: 'temporary',
    now: NOW,
    kind: 'appliance7',
    fs: FS,
    freeBytes: 100 * GiB,
    dirOnRoot: false,
    ...over,
  };
}

const argvs = (plan: Pick<Plan, 'steps'>) =>
  plan.steps.map((s: Step) =>
    'pipeline' in s
      ? s.pipeline.stages.map((c) => [c.file, ...c.args].join(' ')).join(' | ')
      : 'edit' in s
        ? describeStep(s)
        : [s.command.file, ...s.command.args].join(' '),
  );

describe('planCreate', () => {
  it('temporary, half full: snapshot, its check, one pass dd | zstd | tee | sha256sum, snapshot removed', async () => {
    const plan = planCreate(input({ state: await state([ROOT, SNAP0]) }));
    const base = '/diskbackup/zshield-appliance7-20260301T031000Z';
    expect(argvs(plan)).toEqual([
      `lvcreate --snapshot --name snap0-image --size ${2 * GiB}b --addtag zshield_reason=image --addtag zshield_time=${epoch(NOW)} vgroup/lv-root`,
      '(zshield writes /run/zshield/lvm.lock)',
      // The job's own snapshot is checked (and repaired as a restore would) before it is read.
      'e2fsck -f -y /dev/vgroup/snap0-image',
      'debugfs -R stat "/etc/fstab" /dev/vgroup/snap0-image',
      'blkid -p -o export /dev/vgroup/snap0-image',
      'dumpe2fs -h /dev/vgroup/snap0-image',
      // One pass: read the blocks in use, compress, write, hash what is written.
      `dd if=/dev/vgroup/snap0-image bs=4M iflag=count_bytes count=${10 * GiB} status=progress | zstd -T0 -q --check -c | tee ${base}.img.zst.part | sha256sum`,
      'lvremove --yes vgroup/snap0-image',
      '(zshield writes /run/zshield/lvm.lock)',
      `(zshield writes ${base}.sha256.part, ${base}.manifest.json.part)`,
      `(zshield writes ${base}.sha256, ${base}.manifest.json, ${base}.img.zst)`,
    ]);
    // A failed or interrupted attempt leaves nothing: the snapshot and the work files go in `always`.
    expect(argvs({ steps: plan.always! })).toEqual([
      'lvremove --yes vgroup/snap0-image',
      `(zshield writes ${base}.img.zst.part, ${base}.raw.part, ${base}.sha256.part, ${base}.manifest.json.part)`,
    ]);
    expect(plan.always![0]!.when!.text).toMatch(/^if it is still there/);
    expect(plan.paths.image).toBe(`${base}.img.zst`);
    expect(plan.source).toMatchObject({
      kind: 'temporary',
      snapshot: 'snap0-image',
      time: NOW,
      reason: 'image',
    });
    const remove = plan.steps.find((s) => 'command' in s && s.command.file === 'lvremove');
    expect(remove && 'command' in remove && remove.command.runsAfterAbort).toBe(true);
    // No unpacked copy: only the image's bound is needed.
    expect(plan.needBytes).toBe(Math.ceil(5 * GiB * 1.1));
    expect(toolsOf(plan)).toEqual(
      expect.arrayContaining(['lvcreate', 'dd', 'zstd', 'tee', 'sha256sum', 'lvremove', 'e2fsck', 'debugfs']),
    );
    const text = formatPlan(plan);
    expect(text).toContain(
      `$ dd if=/dev/vgroup/snap0-image bs=4M iflag=count_bytes count=${10 * GiB} status=progress | zstd -T0 -q --check -c | tee `,
    );
    expect(text).toContain('note: space in /diskbackup: the image');
    expect(text).toContain('always, at the end (also after a failure):');
    expect(JSON.stringify(planToJson(plan))).toContain('"pipeline":[["dd","if=/dev/vgroup/snap0-image"');
  });

  it('nearly empty (below 40 % in use): the blocks in use go to a sparse file and only its data is compressed', async () => {
    const fs = { ...FS, freeBlocks: ((10 - 0.5) * GiB) / 4096, usedBytes: GiB / 2 };
    const plan = planCreate(input({ state: await state([ROOT, SNAP0]), fs }));
    const base = '/diskbackup/zshield-appliance7-20260301T031000Z';
    const lines = argvs(plan);
    const at = lines.indexOf(`e2image -ra -p /dev/vgroup/snap0-image ${base}.raw.part`);
    expect(lines.slice(at, at + 3)).toEqual([
      `e2image -ra -p /dev/vgroup/snap0-image ${base}.raw.part`,
      `tar --sparse -cf - -C /diskbackup --transform=s,.*,filesystem.raw, zshield-appliance7-20260301T031000Z.raw.part | zstd -T0 -q --check -c | tee ${base}.img.zst.part | sha256sum`,
      `(zshield writes ${base}.raw.part)`,
    ]);
    expect(plan.layout).toBe('sparse');
    // The image and the sparse file.
    expect(plan.needBytes).toBe(Math.ceil((GiB / 2) * 1.1) + GiB / 2);
    expect(plan.notes.join('\n')).toContain('5 % in use (below 40 %): the blocks in use go to a sparse file');
  });

  it('the temporary snapshot is sized like snap0: a share of lv-root, in whole extents, capped by LVM', async () => {
    const st = await state([ROOT]);
    const small = planCreate(
      input({ state: st }, (c) => (c.image.tempSnapshotSize = { kind: 'bytes', bytes: 5 * MiB + 1 })),
    );
    const lvcreate = (p: Plan) =>
      argvs(p)
        .find((l) => l.startsWith('lvcreate'))!
        .split(' ');
    expect(lvcreate(small)).toContain(`${2 * EXTENT}b`);
    const all = planCreate(
      input({ state: st }, (c) => (c.image.tempSnapshotSize = { kind: 'bytes', bytes: 20 * GiB })),
    );
    const size = Number(lvcreate(all)[5]!.replace(/b$/, ''));
    // lv-root + 16 bytes of exception table per 4 KiB chunk + one chunk, rounded up to extents.
    expect(size).toBe(10 * GiB + 44 * MiB);
  });

  it('snap0: reads the restore point as it is, named by its time; no snapshot made', async () => {
    const plan = planCreate(input({ state: await state([ROOT, SNAP0]), source: 'snap0' }));
    expect(argvs(plan).some((l) => /^lv(create|remove)/.test(l))).toBe(false);
    const b = '/diskbackup/zshield-appliance7-20260301T030004Z';
    // snap0 is never written: it is read as it is, then the image is unpacked to a copy and checked.
    expect(argvs(plan).slice(2)).toEqual([
      `dd if=/dev/vgroup/snap0 bs=4M iflag=count_bytes count=${10 * GiB} status=progress | zstd -T0 -q --check -c | tee ${b}.img.zst.part | sha256sum`,
      '(zshield writes /run/zshield/lvm.lock)',
      `zstd -d -q -f --sparse -o ${b}.raw.part ${b}.img.zst.part`,
      `e2fsck -f -y ${b}.raw.part`,
      `e2fsck -f -n ${b}.raw.part`,
      `debugfs -R stat "/etc/fstab" ${b}.raw.part`,
      `(zshield writes ${b}.sha256.part, ${b}.manifest.json.part)`,
      `(zshield writes ${b}.sha256, ${b}.manifest.json, ${b}.img.zst)`,
    ]);
    expect(plan.source).toMatchObject({ kind: 'snap0', time: SNAP_TIME, reason: 'daily' });
    expect(plan.notes.join('\n')).toContain('the LVM lock is held while it is read');
  });

  it('a temporary snapshot left by a dead job is removed first; a foreign LV of that name is refused', async () => {
    const left: LvRow = {
      ...SNAP0,
      name: 'snap0-image',
      tags: ['zshield_reason=image', 'zshield_time=1'],
      minor: 3,
    };
    const plan = planCreate(input({ state: await state([ROOT, left]) }));
    expect(argvs(plan).slice(0, 3)).toEqual([
      // A job killed while the snapshot was mounted for its identity left the mount too.
      'umount /run/zshield/image-identity',
      'lvremove --yes vgroup/snap0-image',
      expect.stringMatching(/^lvcreate --snapshot --name snap0-image /),
    ]);
    const foreign: LvRow = { name: 'snap0-image', attr: '-wi-a-----', size: GiB, minor: 4 };
    const withForeign = await state([ROOT, foreign]);
    expect(() => planCreate(input({ state: withForeign }))).toThrow(
      /vgroup\/snap0-image exists and is not a temporary snapshot made by zshield; it is left alone/,
    );
  });

  it('refuses before anything is made', async () => {
    const refuse = async (i: CreateInput, msg: RegExp) => {
      let err: unknown;
      try {
        planCreate(i);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as Error).message).toMatch(msg);
    };
    await refuse(
      input({ state: await state([ROOT]), source: 'snap0' }),
      /^there is no vgroup\/snap0 to image$/,
    );
    await refuse(
      input({ state: await state([ROOT, { ...SNAP0, attr: 'swi-I-s---' }]), source: 'snap0' }),
      /snap0 is invalid \(it overflowed\)/,
    );
    await refuse(
      input({
        state: await state([
          { ...ROOT, attr: 'Owi-a-s---' },
          { ...SNAP0, attr: 'Swi-a-s---' },
        ]),
      }),
      /merge .* is pending/,
    );
    await refuse(
      input({ state: await state([ROOT], 100) }),
      /not enough space in VG vgroup for the image's temporary snapshot/,
    );
    await refuse(
      input({ state: await state([ROOT]), freeBytes: 5 * GiB }),
      /^not enough space in \/diskbackup for an image: need 5\.5 GiB, 5\.0 GiB free$/,
    );
    // From snap0 the verification's unpacked copy needs room too.
    await refuse(
      input({ state: await state([ROOT, SNAP0]), source: 'snap0', freeBytes: 10 * GiB }),
      /^not enough space in \/diskbackup for an image: need 10\.5 GiB, 10\.0 GiB free$/,
    );
    await refuse(
      input({ state: await state([ROOT, SNAP0]), source: 'snap0', dirOnRoot: true }),
      /^\/diskbackup is on vgroup\/lv-root itself: an image cannot be written there$/,
    );
    const noRoot = await state([]);
    expect(() => planCreate(input({ state: noRoot }))).toThrow(NotFoundError);
  });
});

function manifest(sizeBytes: number): Manifest {
  return {
    format: 'zshield-image/1',
    image: 'zshield-appliance7-20260301T030004Z.img.zst',
    createdAt: NOW.toISOString(),
    agent: { name: 'zshield', version: '0.1.0' },
    host: { hostname: 'appliance7', kind: 'appliance7' },
    source: {
      vg: 'vgroup',
      lv: 'lv-root',
      snapshot: 'snap0',
      kind: 'snap0',
      snapshotTime: SNAP_TIME.toISOString(),
      snapshotReason: 'daily',
      lvSizeBytes: sizeBytes,
    },
    filesystem: { ...FS, sizeBytes, blockCount: sizeBytes / 4096 },
    compression: { format: 'zstd', command: ['zstd', '-T0', '-q', '--check'], frameChecksum: true },
    archive: { format: 'tar-sparse', member: 'filesystem.raw' },
    identity: null,
    sizes: { imageBytes: 1, rawBytes: sizeBytes },
    checksums: { sha256: 'a'.repeat(64) },
    verification: { at: NOW.toISOString(), fsck: 'clean', contains: ['/etc/fstab'], tries: 1 },
    durationMs: 1,
  };
}

describe('planRestore', () => {
  const paths = imagePaths('/media/usb', 'appliance7', SNAP_TIME);
  const idleRoot: LvRow = { ...ROOT, attr: 'owi-a-s---' };

  it('unpacks a sparse copy first, then removes the old restore points, zeroes the LV, writes the blocks in use, checks, grows the file system', async () => {
    const st = await state([idleRoot, SNAP0]);
    const plan = planRestore({
      state: st,
      config: defaultConfig(),
      paths,
      manifest: manifest(8 * GiB),
      unpackTo: paths.rawPart,
    });
    const lines = argvs(plan);
    expect(plan.always!.map((s) => describeStep(s))).toEqual([`(zshield writes ${paths.rawPart})`]);
    expect(lines).toEqual([
      `zstd -d -c -q ${paths.image} | tar -x --sparse -f - -C /media/usb --transform=s,.*,${path.basename(paths.rawPart)},`,
      'lvremove --yes vgroup/snap0',
      'blkdiscard --zeroout --force /dev/vgroup/lv-root',
      `e2image -ra -p ${paths.rawPart} /dev/vgroup/lv-root`,
      'e2fsck -f -y /dev/vgroup/lv-root',
      `resize2fs /dev/vgroup/lv-root ${(10 * GiB) / 1024}K`,
    ]);
    // e2image writes only the blocks in use: every other block must already be zeros.
    expect(lines.findIndex((l) => l.startsWith('blkdiscard --zeroout'))).toBeLessThan(
      lines.findIndex((l) => l.startsWith('e2image')),
    );
    // The unpack, which can fail (a damaged frame, a full directory), comes before anything in the VG.
    expect(plan.steps[0]!.title).toMatch(/^unpack the image .*lv-root is not touched yet/);
    const notes = plan.notes.join('\n');
    expect(notes).toContain(
      `the image is unpacked to ${paths.rawPart} (a sparse copy: 5.0 GiB of data) before anything in vgroup is touched`,
    );
    expect(notes).toContain('then a new snap0 is taken (reason: post-restore)');
  });

  it('without room for the copy the image is streamed, and the plan says what that costs', async () => {
    const st = await state([idleRoot]);
    const plan = planRestore({
      state: st,
      config: defaultConfig(),
      paths,
      manifest: manifest(8 * GiB),
      unpackTo: null,
    });
    const lines = argvs(plan);
    expect(lines.slice(0, 2)).toEqual([
      'blkdiscard --zeroout --force /dev/vgroup/lv-root',
      `zstd -d -c -q ${paths.image} | tar -x -O -f - | dd of=/dev/vgroup/lv-root bs=1M iflag=fullblock conv=sparse,notrunc,fsync status=progress`,
    ]);
    expect(plan.notes.join('\n')).toContain(
      'no room for an unpacked copy in /media/usb (needs 5.6 GiB, or it is read-only): the image is streamed into lv-root, which passes all of its 8.0 GiB through the pipes',
    );
  });

  it('an image of the raw layout (made before the tar archive; manifest archive null) is written without tar', async () => {
    const st = await state([idleRoot]);
    const m = { ...manifest(8 * GiB), archive: null };
    const plan = planRestore({ state: st, config: defaultConfig(), paths, manifest: m, unpackTo: null });
    expect(argvs(plan)[1]).toBe(
      `zstd -d -c -q ${paths.image} | dd of=/dev/vgroup/lv-root bs=1M iflag=fullblock conv=sparse,notrunc,fsync status=progress`,
    );
    const unpacked = planRestore({ state: st, config: defaultConfig(), paths, manifest: m, unpackTo: '/r' });
    expect(argvs(unpacked)[0]).toBe(`zstd -d -q -f --sparse -o /r ${paths.image}`);
    expect(planVerify(paths.image, '/r', [], false).unpack!.pipeline.stages.map((c) => c.file)).toEqual([
      'zstd',
    ]);
  });

  it('an image of exactly the LV size is not grown; without snap0 nothing is removed', async () => {
    const plan = planRestore({
      state: await state([idleRoot]),
      config: defaultConfig(),
      paths,
      manifest: manifest(10 * GiB),
      unpackTo: paths.rawPart,
    });
    expect(
      plan.steps.map((s) => ('pipeline' in s ? 'pipe' : 'command' in s ? s.command.file : 'edit')),
    ).toEqual(['pipe', 'blkdiscard', 'pipe', 'e2fsck']);
  });

  it('refuses a target in use, an image that does not fit, a pending merge', async () => {
    const cfg = defaultConfig();
    const open = await state([ROOT]);
    expect(() =>
      planRestore({ state: open, config: cfg, paths, manifest: manifest(8 * GiB), unpackTo: null }),
    ).toThrow(/vgroup\/lv-root is in use \(mounted or held open\)/);
    let err: unknown;
    try {
      planRestore({
        state: await state([idleRoot]),
        config: cfg,
        paths,
        manifest: manifest(10 * GiB + 4096),
        unpackTo: null,
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toBe(
      "the image's file system (10.0 GiB) does not fit vgroup/lv-root (10.0 GiB)",
    );
    const merging = await state([
      { ...idleRoot, attr: 'Owi-a-s---' },
      { ...SNAP0, attr: 'Swi-a-s---' },
    ]);
    expect(() =>
      planRestore({
        state: merging,
        config: cfg,
        paths,
        manifest: manifest(GiB),
        unpackTo: null,
      }),
    ).toThrow(/merge .* is pending/);
  });
});
