import path from 'node:path';
import type { Config } from '../config/schema.js';
import { formatBytes, resolveSize } from '../config/size.js';
import { RefusedError, UsageError, VerifyError } from '../errors.js';
import type { Check, CommandStep, EditStep, Plan, Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import { labelOf, requireRoot } from '../snapshot/index.js';
import {
  type LvInfo,
  TAG_REASON,
  TAG_TIME,
  type VgState,
  lvRemoveCommand,
  snapshotAllocation,
  snapshotCreateCommand,
} from '../system/lvm.js';
import type { Command } from '../system/command.js';
import { ARCHIVE_MEMBER, type ImagePaths, imagePaths } from './files.js';
import type { Identity } from './identity.js';
import { blkidCommand, dumpe2fsCommand, type FsFacts } from './manifest.js';
import { type VerifySteps, fsCheckSteps, planVerify, verifySteps } from './plan-verify.js';
import { namesOf } from '../names/snapshots.js';

/** The LV name of the image job's own snapshot of lv-root. Nothing else in zshield touches it. */
export const tempSnapshotName = (config: Config) => `${config.lvm.snapshot}-image`;

/** The image's size is unknown until it is written: plan for the data plus a tenth (zstd seldom grows it). */
export const IMAGE_SPACE_FACTOR = 1.1;

/**
 * Below this share of the file system in use, the data goes through a sparse file (e2image writes
 * only the blocks in use there, tar --sparse carries only them into zstd): the free space never
 * crosses a pipe. Above it, one stream: the file system's bytes read whole by dd in 4 MiB reads,
 * compressed, written and hashed once. Measured in the QEMU bench (512 MiB): at 5 % full a stream
 * cost as much as the plain full read (1.13) and the sparse file a quarter of it (0.26); at 50 %
 * e2image's stream (one 4 KiB write per block) cost 1.37x the plain tools.
 */
export const SPARSE_BELOW = 0.4;

export type ImageLayout = 'stream' | 'sparse';

export const layoutFor = (fs: Pick<FsFacts, 'usedBytes' | 'sizeBytes'>): ImageLayout =>
  fs.sizeBytes > 0 && fs.usedBytes / fs.sizeBytes < SPARSE_BELOW ? 'sparse' : 'stream';

/** Where the job mounts its temporary snapshot to give the image another identity. */
export const identityMountPoint = (config: Config) => path.join(config.paths.runDir, 'image-identity');

export interface SourceInfo {
  vg: string;
  /** lv-root. */
  lv: string;
  /** The LV read: snap0 or the temporary snapshot. */
  snapshot: string;
  device: string;
  kind: 'temporary' | 'snap0';
  time: Date;
  reason: string | null;
  lvSizeBytes: number;
}

/**
 * What the job does in node at the points the plan names (the plan's edit steps and conditions
 * call these): the planner stays pure, the flow (create.ts) supplies them.
 */
export interface CreateActions {
  /** Let go of the LVM lock. */
  unlock(): Promise<void>;
  /** The temporary snapshot as LVM sees it now, probed under the LVM lock (taken again if let go). */
  snapshotState(): Promise<'gone' | 'valid' | 'invalid'>;
  makeMountPoint(mountPoint: string): void;
  writeIdentity(mountPoint: string, identity: Identity): void;
  /** Judge the verification, hash the image, write its checksum and manifest (as .part files). */
  finish(): Promise<void>;
  /** Give the three files their final names, the image last. */
  publish(): void;
  removeFiles(files: readonly string[]): void;
}

/** Output of read-only steps, gathered as they run, for the manifest. */
export interface CreateFindings {
  blkid: string;
  dumpe2fs: string;
  /** sha256sum of the image's bytes as tee wrote them. */
  sha256: string;
  /** The temporary snapshot was found invalid (it overflowed) when its removal was considered. */
  snapshotOverflowed: boolean;
}

export interface CreatePlan extends Plan {
  source: SourceInfo;
  paths: ImagePaths;
  /** Bytes the image directory must have free. */
  needBytes: number;
  identity: Identity | null;
  /** stream: the raw file system compressed; sparse: a tar --sparse archive of it, compressed. */
  layout: ImageLayout;
  /** The compressing stage (its options shape the file, and the manifest records them). */
  compressor: Command;
  verify: VerifySteps;
  findings: CreateFindings;
}

export interface CreateInput {
  state: VgState;
  config: Config;
  source: 'temporary' | 'snap0';
  now: Date;
  /** The host part of the image's name. */
  kind: string;
  /** The file system to be imaged (for a temporary snapshot: lv-root's own, as it is now). */
  fs: FsFacts;
  /** Free bytes in the image directory (statfs, for unprivileged use as well). */
  freeBytes: number;
  /** Is the image directory on lv-root's own file system? */
  dirOnRoot: boolean;
  /** Signal for the long pipelines (the job's own). */
  signal?: AbortSignal;
  /** Another hostname (and IP) for the image: only with a temporary snapshot. */
  identity?: Identity | null;
  /** Where the LVM lock lives (shown in the plan where the job lets go of it). */
  lockFile?: string;
}

/** Actions that do nothing: for showing a plan, and for tests of the planner. */
export const noActions: CreateActions = {
  unlock: async () => {},
  snapshotState: async () => 'gone',
  makeMountPoint: () => {},
  writeIdentity: () => {},
  finish: async () => {},
  publish: () => {},
  removeFiles: () => {},
};

/**
 * Plan one attempt at an image: where it comes from, what it is written to, how it is checked.
 * The steps are what runs (runPlan); the temporary snapshot's removal and the work files' are in
 * `always`, so a failed or interrupted attempt leaves nothing behind.
 */
export function planCreate(input: CreateInput, actions: CreateActions = noActions): CreatePlan {
  const { config } = input;
  refuseUnimageable(input);
  const picked = input.source === 'snap0' ? fromSnap0(input) : fromTemporary(input);
  const { source } = picked;
  const paths = imagePaths(config.image.dir, input.kind, source.time);
  const layout = layoutFor(input.fs);
  const space = spaceOf(input, layout);
  const findings: CreateFindings = { blkid: '', dumpe2fs: '', sha256: '', snapshotOverflowed: false };
  const identity = input.identity ?? null;
  const id = identity || picked.leftover.length ? identitySteps(input, source, identity, actions) : null;
  const copy = copySteps(input, source, paths, findings, layout, actions);
  const verify = verifyOf(input, source, paths, layout);
  const names = namesOf(config);
  const unlock = (why: string) => unlockStep(input, why, actions);
  const temp = picked.temporary;
  const removeTemp = (last: boolean) => removeTempStep(source, temp!.remove, actions, findings, last);
  const steps: Step[] = [
    ...(picked.leftover.length && id ? [id.unmountIfStill] : []),
    ...picked.leftover,
    ...(temp
      ? [temp.create, unlock("the copy reads the job's own snapshot, which no other job touches")]
      : []),
    ...(id && identity ? id.steps : []),
    // The job's own snapshot is checked (and repaired, as a restore would) before it is read;
    // snap0 is never written, so its image is checked by unpacking it after.
    ...(temp ? verifySteps(verify) : []),
    ...copy.read,
    ...copy.image,
    ...(temp
      ? [removeTemp(false), unlock('nothing after this changes LVM')]
      : [unlock(`${names.snap} has been read: a backup may replace it now`), ...verifySteps(verify)]),
    {
      title: `write the image's SHA-256 and its manifest (after judging what the checks found)`,
      edit: { files: [paths.sumPart, paths.manifestPart], apply: () => actions.finish() },
    },
    {
      title: 'give the checksum, the manifest and then the image their final names',
      edit: { files: [paths.sum, paths.manifest, paths.image], apply: () => actions.publish() },
    },
  ];
  const always: Step[] = [
    ...(id && identity ? [id.unmountIfStill] : []),
    ...(temp ? [removeTemp(true)] : []),
    removeStep(
      'remove the work files that are left (all of them after a failure)',
      [paths.imagePart, paths.rawPart, paths.sumPart, paths.manifestPart],
      actions,
    ),
  ];
  const notes = [
    ...picked.notes,
    ...space.notes,
    ...(id && identity ? [id.note] : []),
    `when verified: ${paths.base}.{img.zst,sha256,manifest.json} in ${config.image.dir}; ${config.image.keep} image(s) of this host are kept`,
  ];
  return {
    title: `Image ${names.vg}/${names.root} (${source.kind === 'snap0' ? `from ${names.snap}` : 'from a temporary snapshot'}) to ${paths.image}`,
    notes,
    checks: [imageIsNew(paths)],
    steps,
    always,
    source,
    paths,
    needBytes: space.needBytes,
    identity,
    layout,
    compressor: copy.compressor,
    verify,
    findings,
  };
}

/**
 * What proves the image good. From the job's own temporary snapshot: e2fsck -fy of the snapshot
 * before it is read (so the image holds a consistent file system, as a restore would make it),
 * debugfs for the paths a system has; the written stream is hashed as it is written and zstd
 * checksums every frame. From snap0 (never written): the image is unpacked to a sparse copy and
 * that is checked, as before.
 */
function verifyOf(
  input: CreateInput,
  source: SourceInfo,
  paths: ImagePaths,
  layout: ImageLayout,
): VerifySteps {
  const must = input.config.image.mustContain;
  if (source.kind === 'snap0')
    return planVerify(paths.imagePart, paths.rawPart, must, layout === 'sparse', input.signal);
  return {
    unpack: null,
    ...fsCheckSteps(source.device, `${source.snapshot} (the job's own snapshot)`, must, false),
  };
}

function imageIsNew(paths: ImagePaths): Check {
  return {
    title: `no image of this snapshot exists yet (${path.basename(paths.image)})`,
    run: async () => {
      const { existsSync } = await import('node:fs');
      if (existsSync(paths.image)) {
        throw new RefusedError(`an image of this snapshot already exists: ${paths.image}`, {
          hint: `check it with zshield image verify ${paths.image}, or remove it to make it again`,
        });
      }
    },
  };
}

function refuseUnimageable(input: CreateInput): void {
  const { state, config } = input;
  const names = namesOf(config);
  const root = requireRoot(state, names);
  if (root.merging) {
    throw new RefusedError(`a merge of a snapshot into ${names.vg}/${names.root} is pending`, {
      hint: 'the restore finishes when lv-root is next activated (reboot); make the image after that',
    });
  }
  if (input.dirOnRoot) {
    // Every block the image writes into lv-root is first copied into the snapshot being read
    // (and into snap0): the copy would overflow the temporary snapshot, or invalidate the restore
    // point; and each image would hold the ones before it.
    throw new RefusedError(
      `${config.image.dir} is on ${names.vg}/${names.root} itself: an image cannot be written there`,
      { hint: 'set image.dir to a directory on another volume (e.g. under /data), or mount one at it' },
    );
  }
  if (input.identity && input.source === 'snap0') {
    throw new UsageError(
      `--hostname needs a temporary snapshot (--source temporary): ${names.snap} is the restore point and is never modified`,
    );
  }
}

interface Picked {
  source: SourceInfo;
  notes: string[];
  /** Removing a temporary snapshot left by a job that died (kill -9, power cut). */
  leftover: CommandStep[];
  temporary: { create: CommandStep; remove: CommandStep } | null;
}

function fromSnap0(input: CreateInput): Picked {
  const names = namesOf(input.config);
  const root = requireRoot(input.state, names);
  const snap = input.state.lvs.find((l) => l.name === names.snap);
  if (!snap) {
    throw new RefusedError(`there is no ${names.vg}/${names.snap} to image`, {
      hint: 'take a backup first (zshield backup), or set image.source to "temporary"',
    });
  }
  if (snap.kind !== 'snapshot' || snap.origin !== names.root || snap.invalid || snap.merging) {
    const why = snap.invalid
      ? 'invalid (it overflowed)'
      : snap.merging
        ? 'being merged'
        : `not a snapshot of ${names.root}`;
    throw new RefusedError(`${names.vg}/${names.snap} is ${why}: it cannot be imaged`);
  }
  const label = labelOf(snap);
  const source: SourceInfo = {
    vg: names.vg,
    lv: names.root,
    snapshot: names.snap,
    device: snap.path || `/dev/${names.vg}/${names.snap}`,
    kind: 'snap0',
    time: label.time ?? input.now,
    reason: label.reason,
    lvSizeBytes: root.sizeBytes,
  };
  const note = `the image is of ${names.snap}, the backup of ${source.time.toISOString()}${label.reason ? ` (${label.reason})` : ''}; the LVM lock is held while it is read, so no backup replaces it meanwhile`;
  return { source, notes: [note], leftover: [], temporary: null };
}

function fromTemporary(input: CreateInput): Picked {
  const { state, config } = input;
  const names = namesOf(config);
  const root = requireRoot(state, names);
  const tmpName = tempSnapshotName(config);
  const found = state.lvs.find((l) => l.name === tmpName);
  const want = resolveSize(config.image.tempSnapshotSize, root.sizeBytes);
  const size = snapshotAllocation(want, root.sizeBytes, state.vg.extentBytes);
  const free = state.vg.freeExtents * state.vg.extentBytes + (found ? found.sizeBytes : 0);
  if (free < size) {
    throw new RefusedError(
      `not enough space in VG ${names.vg} for the image's temporary snapshot: need ${formatBytes(size)}, ${formatBytes(free)} free`,
      { hint: 'lower image.tempSnapshotSize, free space in the VG, or set image.source to "snap0"' },
    );
  }
  const leftover: CommandStep[] = found
    ? [
        {
          title: `remove ${tmpName}, left by an image job that did not finish`,
          command: ownSnapshotRemove(names.vg, tmpName, found, names.root),
        },
      ]
    : [];
  const tags = [`${TAG_REASON}image`, `${TAG_TIME}${Math.floor(input.now.getTime() / 1000)}`];
  const create: CommandStep = {
    title: `create ${tmpName}, a temporary snapshot of ${names.root} (${formatBytes(size)} copy-on-write)`,
    command: snapshotCreateCommand({
      vg: names.vg,
      origin: names.root,
      name: tmpName,
      sizeBytes: size,
      tags,
    }),
  };
  const remove: CommandStep = {
    title: `remove the temporary snapshot ${tmpName}`,
    command: { ...lvRemoveCommand(names.vg, tmpName), runsAfterAbort: true },
  };
  const source: SourceInfo = {
    vg: names.vg,
    lv: names.root,
    snapshot: tmpName,
    device: `/dev/${names.vg}/${tmpName}`,
    kind: 'temporary',
    time: input.now,
    reason: 'image',
    lvSizeBytes: root.sizeBytes,
  };
  const note = `the image is of ${names.root} as it is now, read from ${tmpName}; the snapshot is removed as soon as its blocks are copied (before the compression and the verification)`;
  return { source, notes: [note], leftover, temporary: { create, remove } };
}

function ownSnapshotRemove(vg: string, name: string, lv: LvInfo, root: string) {
  // Only what the image job made: a snapshot of lv-root tagged by it. Anything else by that name
  // is not ours, and the job refuses rather than remove it.
  if (lv.kind !== 'snapshot' || lv.origin !== root || !lv.tags.includes(`${TAG_REASON}image`)) {
    throw new RefusedError(
      `${vg}/${name} exists and is not a temporary snapshot made by zshield; it is left alone`,
      { hint: `rename or remove that volume, or set image.source to "snap0"` },
    );
  }
  return { ...lvRemoveCommand(vg, name), runsAfterAbort: true };
}

function spaceOf(input: CreateInput, layout: ImageLayout): { needBytes: number; notes: string[] } {
  const { fs, config } = input;
  const imageBound = Math.ceil(fs.usedBytes * IMAGE_SPACE_FACTOR);
  // A sparse copy of the data: the sparse layout's, or the one an image of snap0 is checked in
  // (one at a time: the first is removed before the second is made).
  const copy = layout === 'sparse' || input.source === 'snap0' ? fs.usedBytes : 0;
  const needBytes = imageBound + copy;
  const notes = [
    `${fs.type} file system of ${formatBytes(fs.sizeBytes)} with ${formatBytes(fs.usedBytes)} in use`,
    `space in ${config.image.dir}: the image's size is not known before it is written, so up to ${formatBytes(imageBound)} (the data plus a tenth) is counted for it${copy ? `, and ${formatBytes(copy)} for a sparse copy of the data` : ''}; ${formatBytes(input.freeBytes)} free`,
    layout === 'sparse'
      ? `${Math.round((100 * fs.usedBytes) / Math.max(1, fs.sizeBytes))} % in use (below ${SPARSE_BELOW * 100} %): the blocks in use go to a sparse file, and only its data is compressed (the holes never cross a pipe)`
      : `${Math.round((100 * fs.usedBytes) / Math.max(1, fs.sizeBytes))} % in use: one stream, the file system read whole (dd, 4 MiB reads) | zstd, read once and written once; free blocks are carried as they are`,
  ];
  if (input.freeBytes < needBytes) {
    throw new RefusedError(
      `not enough space in ${config.image.dir} for an image: need ${formatBytes(needBytes)}, ${formatBytes(input.freeBytes)} free`,
      { hint: `free space there (zshield image prune --keep N), or point image.dir at a larger file system` },
    );
  }
  return { needBytes, notes };
}

function unlockStep(input: CreateInput, why: string, actions: CreateActions): EditStep {
  const lockFile = input.lockFile ?? path.join(input.config.paths.runDir, 'lvm.lock');
  return {
    title: `let go of the LVM lock (${why})`,
    edit: { files: [lockFile], apply: () => actions.unlock() },
  };
}

function removeTempStep(
  source: SourceInfo,
  remove: CommandStep,
  actions: CreateActions,
  findings: CreateFindings,
  /** In `always`: remove whatever is left; in the steps: an overflowed snapshot fails the attempt. */
  cleanup: boolean,
): CommandStep {
  return {
    ...remove,
    when: {
      text: cleanup
        ? 'if it is still there (under the LVM lock, taken again)'
        : 'if it did not overflow while it was read (an overflow fails the attempt; checked under the LVM lock, taken again)',
      holds: async () => {
        const state = await actions.snapshotState();
        if (state === 'invalid') findings.snapshotOverflowed = true;
        if (state === 'invalid' && !cleanup) throw overflowed(source);
        return state !== 'gone';
      },
    },
  };
}

export function overflowed(source: SourceInfo): VerifyError {
  return new VerifyError(
    `the temporary snapshot ${source.vg}/${source.snapshot} overflowed during the copy (too much was written to ${source.lv} meanwhile)`,
    { hint: 'raise image.tempSnapshotSize, or make the image at a quieter time' },
  );
}

function removeStep(title: string, files: string[], actions: CreateActions): EditStep {
  return { title, edit: { files, apply: () => actions.removeFiles(files) } };
}

/** Another identity written into the job's own snapshot; `identity` null: only the unmount of a leftover mount. */
function identitySteps(
  input: CreateInput,
  source: SourceInfo,
  identity: Identity | null,
  actions: CreateActions,
) {
  const mnt = identityMountPoint(input.config);
  const unmount = { file: 'umount', args: [mnt], mutates: true, runsAfterAbort: true };
  const unmountIfStill: CommandStep = {
    title: `unmount ${mnt} if it is still mounted (a failure or a job that died left it)`,
    // umount exits 32 when nothing is mounted there: that is the answer wanted.
    command: { ...unmount, okCodes: [0, 32] },
  };
  if (!identity) return { steps: [], unmountIfStill, note: '' };
  const steps: Step[] = [
    {
      title: `make the mount point ${mnt}`,
      edit: { files: [mnt], apply: () => actions.makeMountPoint(mnt) },
    },
    {
      title: `mount ${source.snapshot} (the job's own snapshot) to give the image another identity`,
      command: {
        file: 'mount',
        args: ['-t', input.fs.type, '-o', 'nodev,nosuid,noexec', source.device, mnt],
        mutates: true,
      },
    },
    {
      title: `set the image's hostname to ${identity.hostname}${identity.ip ? ` and its static address to ${identity.ip}` : ''}`,
      edit: {
        root: mnt,
        files: ['etc/hostname', 'etc/hosts', ...(identity.ip ? ['etc/network/interfaces'] : [])],
        apply: () => actions.writeIdentity(mnt, identity),
      },
    },
    { title: `unmount ${source.snapshot}`, command: unmount },
  ];
  const names = namesOf(input.config);
  const note = `the image gets another identity (hostname ${identity.hostname}${identity.ip ? `, address ${identity.ip}` : ''}), written into ${source.snapshot} only: ${names.root} and ${names.snap} keep theirs`;
  return { steps, unmountIfStill, note };
}

/**
 * The copy, by layout. stream: one pass, dd of the file system's bytes | zstd --check -c | tee
 * image | sha256sum (free blocks are carried as they are on the disk: zeros squeeze to nothing,
 * deleted data stays in the image, as in any dd image). sparse: e2image -ra writes the blocks in use to a
 * sparse file (it seeks over the rest), then tar --sparse (SEEK_HOLE) carries only the data into
 * the same zstd | tee | sha256sum. Either way the checksum is of exactly the bytes written and
 * zstd checksums every frame.
 *
 * Long (90 lines) on purpose: the two layouts are read side by side, stage by stage.
 */
function copySteps(
  input: CreateInput,
  source: SourceInfo,
  paths: ImagePaths,
  findings: CreateFindings,
  layout: ImageLayout,
  actions: CreateActions,
) {
  const sig = input.signal ? { signal: input.signal } : {};
  const read = factSteps(source, findings);
  // --check: zstd's checksum of the content in every frame, checked by every decompression.
  const compressor: Command = { file: 'zstd', args: ['-T0', '-q', '--check', '-c'], mutates: false };
  const written: Command[] = [
    compressor,
    { file: 'tee', args: [paths.imagePart], mutates: true },
    {
      file: 'sha256sum',
      args: [],
      mutates: false,
      onLine: (l, s) => {
        const m = /^([0-9a-f]{64})\s/.exec(l);
        if (s === 'stdout' && m) findings.sha256 = m[1]!;
      },
    },
  ];
  const title = `image the file system of ${source.snapshot}`;
  if (layout === 'stream') {
    const image: Step = {
      title: `${title} (all of its ${formatBytes(input.fs.sizeBytes)}), compressed, to ${paths.imagePart}, hashing the bytes as they are written`,
      progress: progressParsers.dd,
      pipeline: {
        // dd in 4 MiB reads, exactly the file system's bytes: e2image would write its stream 4 KiB
        // at a time (one write per block), measured 1.37x the plain tools at 50 % full.
        stages: [
          {
            file: 'dd',
            args: [
              `if=${source.device}`,
              'bs=4M',
              'iflag=count_bytes',
              `count=${input.fs.sizeBytes}`,
              'status=progress',
            ],
            mutates: false,
          },
          ...written,
        ],
        mutates: true,
        ...sig,
      },
    };
    return { read, image: [image], compressor };
  }
  const image: Step[] = [
    {
      title: `${title}: its blocks in use to a sparse file, ${paths.rawPart}`,
      progress: progressParsers.e2image,
      pipeline: {
        stages: [{ file: 'e2image', args: ['-ra', '-p', source.device, paths.rawPart], mutates: true }],
        mutates: true,
        ...sig,
      },
    },
    {
      title: `${title}: its data (not its holes) compressed to ${paths.imagePart}, hashing the bytes as they are written`,
      pipeline: {
        stages: [
          {
            file: 'tar',
            args: [
              '--sparse',
              '-cf',
              '-',
              '-C',
              paths.dir,
              `--transform=s,.*,${ARCHIVE_MEMBER},`,
              path.basename(paths.rawPart),
            ],
            mutates: false,
          },
          ...written,
        ],
        mutates: true,
        ...sig,
      },
    },
    removeStep('remove the sparse file', [paths.rawPart], actions),
  ];
  return { read, image, compressor };
}

function factSteps(source: SourceInfo, findings: CreateFindings): Step[] {
  return [
    {
      title: `read the file system facts of ${source.snapshot} for the manifest`,
      command: {
        ...blkidCommand(source.device),
        // blkid exits 2 when it finds nothing on the device: that is an answer, judged after.
        okCodes: [0, 2],
        onLine: (l, s) => {
          if (s === 'stdout') findings.blkid += `${l}\n`;
        },
      },
    },
    {
      title: `read the superblock of ${source.snapshot} for the manifest`,
      command: {
        ...dumpe2fsCommand(source.device),
        okCodes: [0, 1],
        onLine: (l, s) => {
          if (s === 'stdout') findings.dumpe2fs += `${l}\n`;
        },
      },
    },
  ];
}
