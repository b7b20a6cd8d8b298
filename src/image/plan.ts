import path from 'node:path';
import type { Config } from '../config/schema.js';
import { formatBytes, resolveSize } from '../config/size.js';
import { RefusedError, UsageError } from '../errors.js';
import { labelOf, namesOf, requireRoot } from '../snapshot/rotation.js';
import {
  type LvInfo,
  TAG_REASON,
  TAG_TIME,
  type VgState,
  lvRemoveCommand,
  snapshotCreateCommand,
} from '../system/lvm.js';
import { type Pipeline, formatPipeline } from '../system/pipeline.js';
import { type Command, argvOf, formatArgv } from '../system/runner.js';
import { ARCHIVE_MEMBER, type ImagePaths, imagePaths } from './files.js';
import type { Identity } from './identity.js';
import type { FsFacts, Manifest } from './manifest.js';

/**
 * Image jobs as plans: pure functions of probed state that return the very commands the job runs,
 * printed first (the dry-run shows exactly these). A step is one command or one pipeline.
 */
export type ImageStep =
  | { title: string; command: Command }
  | { title: string; pipeline: Pipeline }
  | { title: string; edit: IdentityEdit };

/** Files zshield itself rewrites (in node, no tool): the identity of an image, in its own snapshot. */
export interface IdentityEdit {
  root: string;
  files: string[];
}

/** A step as it is shown: its argv or pipeline, or the files zshield rewrites. */
export const describeStep = (s: ImageStep): string =>
  'pipeline' in s
    ? formatPipeline(s.pipeline)
    : 'edit' in s
      ? `(zshield rewrites ${s.edit.files.map((f) => path.join(s.edit.root, f)).join(', ')})`
      : formatArgv(argvOf(s.command));

export interface ImagePlan {
  title: string;
  notes: string[];
  steps: ImageStep[];
}

export function formatImagePlan(plan: ImagePlan): string {
  const lines = [plan.title];
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  plan.steps.forEach((s, i) => {
    lines.push(`  ${i + 1}. ${s.title}`);
    lines.push(`     ${'edit' in s ? '' : '$ '}${describeStep(s)}`);
  });
  return lines.join('\n');
}

export function imagePlanToJson(plan: ImagePlan): unknown {
  return {
    title: plan.title,
    notes: plan.notes,
    steps: plan.steps.map((s) =>
      'pipeline' in s
        ? { title: s.title, pipeline: s.pipeline.stages.map((c) => argvOf(c)), mutates: s.pipeline.mutates }
        : 'edit' in s
          ? { title: s.title, edit: s.edit.files.map((f) => path.join(s.edit.root, f)), mutates: true }
          : { title: s.title, argv: argvOf(s.command), mutates: s.command.mutates },
    ),
  };
}

/** Every program a plan runs (to check before the first write). */
export function toolsOfImagePlan(plan: ImagePlan): string[] {
  return plan.steps.flatMap((s) =>
    'pipeline' in s ? s.pipeline.stages.map((c) => c.file) : 'edit' in s ? [] : [s.command.file],
  );
}

/** The LV name of the image job's own snapshot of lv-root. Nothing else in zshield touches it. */
export const tempSnapshotName = (config: Config) => `${config.lvm.snapshot}-image`;

/** The image's size is unknown until it is written: plan for the data plus a tenth (zstd seldom grows it). */
export const IMAGE_SPACE_FACTOR = 1.1;

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

export interface CreatePlan extends ImagePlan, VerifySteps {
  source: SourceInfo;
  paths: ImagePaths;
  /** Bytes the image directory must have free. */
  needBytes: number;
  /** A temporary snapshot left by a job that died (kill -9, power cut): removed first. */
  leftover: { title: string; command: Command } | null;
  createSnapshot: { title: string; command: Command } | null;
  /** e2image of the snapshot into a sparse raw file (the blocks in use only). */
  extract: { title: string; pipeline: Pipeline };
  /** tar --sparse of that file through zstd: the image. */
  copy: { title: string; pipeline: Pipeline };
  removeSnapshot: { title: string; command: Command } | null;
  /** Another network identity, written into the temporary snapshot before the copy. */
  identity: IdentityPlan | null;
}

export interface IdentityPlan {
  identity: Identity;
  mountPoint: string;
  mount: { title: string; command: Command };
  edit: { title: string; edit: IdentityEdit };
  unmount: { title: string; command: Command };
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
  /** Signal for the copy pipeline (the job's own). */
  signal?: AbortSignal;
  /** Another hostname (and IP) for the image: only with a temporary snapshot. */
  identity?: Identity | null;
}

/** Where the job mounts its temporary snapshot to give the image another identity. */
export const identityMountPoint = (config: Config) => path.join(config.paths.runDir, 'image-identity');

/** Plan one attempt at an image: where it comes from, what it is written to, how it is checked. */
export function planCreate(input: CreateInput): CreatePlan {
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
      {
        hint: 'set image.dir to a directory on another volume (e.g. under /data), or mount one at it',
      },
    );
  }
  const tmpName = tempSnapshotName(config);
  const notes: string[] = [];
  const identity = input.identity ?? null;
  if (identity && input.source === 'snap0') {
    throw new UsageError(
      `--hostname needs a temporary snapshot (--source temporary): ${names.snap} is the restore point and is never modified`,
    );
  }
  let source: SourceInfo;
  let createSnapshot: CreatePlan['createSnapshot'] = null;
  let removeSnapshot: CreatePlan['removeSnapshot'] = null;
  const found = state.lvs.find((l) => l.name === tmpName);
  const leftover =
    input.source === 'temporary' && found
      ? {
          title: `remove ${tmpName}, left by an image job that did not finish`,
          command: ownSnapshotRemove(names.vg, tmpName, found, names.root),
        }
      : null;

  if (input.source === 'snap0') {
    const snap = state.lvs.find((l) => l.name === names.snap);
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
    source = {
      vg: names.vg,
      lv: names.root,
      snapshot: names.snap,
      device: snap.path || `/dev/${names.vg}/${names.snap}`,
      kind: 'snap0',
      time: label.time ?? input.now,
      reason: label.reason,
      lvSizeBytes: root.sizeBytes,
    };
    notes.push(
      `the image is of ${names.snap}, the backup of ${source.time.toISOString()}${label.reason ? ` (${label.reason})` : ''}; the LVM lock is held while it is read, so no backup replaces it meanwhile`,
    );
  } else {
    const extent = state.vg.extentBytes;
    // As the backup rotation does: LVM never allocates more copy-on-write than the origin can use.
    const CHUNK = 4096;
    const maxCow = root.sizeBytes + Math.ceil(root.sizeBytes / CHUNK) * 16 + CHUNK;
    const want = resolveSize(config.image.tempSnapshotSize, root.sizeBytes);
    const size = Math.ceil(Math.min(want, maxCow) / extent) * extent;
    const free = state.vg.freeExtents * extent + (found ? found.sizeBytes : 0);
    if (free < size) {
      throw new RefusedError(
        `not enough space in VG ${names.vg} for the image's temporary snapshot: need ${formatBytes(size)}, ${formatBytes(free)} free`,
        { hint: 'lower image.tempSnapshotSize, free space in the VG, or set image.source to "snap0"' },
      );
    }
    const tags = [`${TAG_REASON}image`, `${TAG_TIME}${Math.floor(input.now.getTime() / 1000)}`];
    createSnapshot = {
      title: `create ${tmpName}, a temporary snapshot of ${names.root} (${formatBytes(size)} copy-on-write)`,
      command: snapshotCreateCommand({
        vg: names.vg,
        origin: names.root,
        name: tmpName,
        sizeBytes: size,
        tags,
      }),
    };
    removeSnapshot = {
      title: `remove the temporary snapshot ${tmpName}`,
      command: { ...lvRemoveCommand(names.vg, tmpName), runsAfterAbort: true },
    };
    source = {
      vg: names.vg,
      lv: names.root,
      snapshot: tmpName,
      device: `/dev/${names.vg}/${tmpName}`,
      kind: 'temporary',
      time: input.now,
      reason: 'image',
      lvSizeBytes: root.sizeBytes,
    };
    notes.push(
      `the image is of ${names.root} as it is now, read from ${tmpName}; the snapshot is removed as soon as its blocks are copied (before the compression and the verification)`,
    );
  }

  const paths = imagePaths(config.image.dir, input.kind, source.time);
  const fs = input.fs;
  const imageBound = Math.ceil(fs.usedBytes * IMAGE_SPACE_FACTOR);
  const needBytes = imageBound + fs.usedBytes;
  notes.push(
    `${fs.type} file system of ${formatBytes(fs.sizeBytes)} with ${formatBytes(fs.usedBytes)} in use: e2image copies only the blocks in use`,
  );
  notes.push(
    `space in ${config.image.dir}: the image's size is not known before it is written, so up to ${formatBytes(imageBound)} (the data plus a tenth) is counted for it, and ${formatBytes(fs.usedBytes)} for the sparse copy its verification unpacks; ${formatBytes(input.freeBytes)} free`,
  );
  if (input.freeBytes < needBytes) {
    throw new RefusedError(
      `not enough space in ${config.image.dir} for an image: need ${formatBytes(needBytes)}, ${formatBytes(input.freeBytes)} free`,
      { hint: `free space there (zshield image prune --keep N), or point image.dir at a larger file system` },
    );
  }

  // e2image writes only the blocks in use when its output is a file (it seeks over the rest), but
  // to a pipe it must write every byte of the file system, zeros included: a nearly empty 100 GB
  // LV would be 100 GB through zstd. So the raw copy goes to a sparse file first, and tar --sparse
  // (which finds the holes with SEEK_HOLE) carries only the data into zstd.
  const extract = {
    title: `copy the file system's blocks in use from ${source.snapshot} to a sparse file, ${paths.rawPart}`,
    pipeline: {
      // -r raw image, -a with file data, -p progress (on stderr).
      stages: [{ file: 'e2image', args: ['-ra', '-p', source.device, paths.rawPart], mutates: true }],
      mutates: true,
      ...(input.signal ? { signal: input.signal } : {}),
    } satisfies Pipeline,
  };
  const copy = {
    title: `compress its data (not its holes) to ${paths.imagePart}`,
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
        // --check: zstd's checksum of the content in every frame, checked by every decompression.
        { file: 'zstd', args: ['-T0', '-q', '--check', '-f', '-o', paths.imagePart], mutates: true },
      ],
      mutates: true,
      ...(input.signal ? { signal: input.signal } : {}),
    } satisfies Pipeline,
  };
  const { unpack, fsck, fsckFix, contains } = planVerify(
    paths.imagePart,
    paths.rawPart,
    config.image.mustContain,
  );

  let identityPlan: IdentityPlan | null = null;
  if (identity) {
    const mnt = identityMountPoint(config);
    identityPlan = {
      identity,
      mountPoint: mnt,
      mount: {
        title: `mount ${tmpName} (the job's own snapshot) to give the image another identity`,
        command: {
          file: 'mount',
          args: ['-t', fs.type, '-o', 'nodev,nosuid,noexec', source.device, mnt],
          mutates: true,
        },
      },
      edit: {
        title: `set the image's hostname to ${identity.hostname}${identity.ip ? ` and its static address to ${identity.ip}` : ''}`,
        edit: {
          root: mnt,
          files: ['etc/hostname', 'etc/hosts', ...(identity.ip ? ['etc/network/interfaces'] : [])],
        },
      },
      unmount: {
        title: `unmount ${tmpName}`,
        command: { file: 'umount', args: [mnt], mutates: true, runsAfterAbort: true },
      },
    };
    notes.push(
      `the image gets another identity (hostname ${identity.hostname}${identity.ip ? `, address ${identity.ip}` : ''}), written into ${tmpName} only: ${names.root} and ${names.snap} keep theirs`,
    );
  }

  const steps: ImageStep[] = [
    ...(leftover ? [leftover] : []),
    ...(createSnapshot ? [createSnapshot] : []),
    ...(identityPlan ? [identityPlan.mount, identityPlan.edit, identityPlan.unmount] : []),
    extract,
    ...(removeSnapshot ? [removeSnapshot] : []),
    copy,
    unpack,
    fsck,
    fsckFix,
    ...contains,
  ];
  notes.push(
    `when verified: ${paths.base}.{img.zst,sha256,manifest.json} in ${config.image.dir}; the copy is removed; ${config.image.keep} image(s) of this host are kept`,
  );
  return {
    title: `Image ${names.vg}/${names.root} (${source.kind === 'snap0' ? `from ${names.snap}` : 'from a temporary snapshot'}) to ${paths.image}`,
    notes,
    steps,
    source,
    paths,
    needBytes,
    leftover,
    createSnapshot,
    extract,
    copy,
    unpack,
    fsck,
    fsckFix,
    contains,
    removeSnapshot,
    identity: identityPlan,
  };
}

export interface VerifySteps {
  unpack: { title: string; pipeline: Pipeline };
  fsck: { title: string; command: Command };
  /** Only when `fsck` finds something: what a restore's e2fsck would do, done to the copy; then `fsck` again. */
  fsckFix: { title: string; command: Command };
  contains: { title: string; command: Command }[];
}

/**
 * The image unpacked to a sparse file `raw`: only the file system's data is written (tar --sparse
 * recreates the holes; the raw layout made before the archive, by zstd --sparse). zstd checks the
 * checksum of every frame on the way.
 */
export function unpackPipeline(image: string, raw: string, archived: boolean): Pipeline {
  return {
    stages: !archived
      ? [{ file: 'zstd', args: ['-d', '-q', '-f', '--sparse', '-o', raw, image], mutates: true }]
      : [
          { file: 'zstd', args: ['-d', '-c', '-q', image], mutates: false },
          {
            file: 'tar',
            // The one member gets the copy's name, whatever the archive calls it: nothing is
            // written anywhere else.
            args: [
              '-x',
              '--sparse',
              '-f',
              '-',
              '-C',
              path.dirname(raw),
              `--transform=s,.*,${path.basename(raw)},`,
            ],
            mutates: true,
          },
        ],
    mutates: true,
  };
}

/**
 * How an image is verified without mounting anything: unpacked to a sparse copy (zstd checks the
 * checksum of every frame on the way), the copy's file system checked by e2fsck, and looked into
 * with debugfs for the paths a system has. The copy is the caller's to remove.
 */
export function planVerify(
  image: string,
  raw: string,
  mustContain: readonly string[],
  archived = true,
): VerifySteps {
  return {
    unpack: {
      title: 'verify: unpack the image to a sparse copy (zstd checks its frame checksums)',
      pipeline: unpackPipeline(image, raw, archived),
    },
    fsck: {
      title: 'verify: check the file system in the copy, read-only',
      // Exit 4: problems found (and, with -n, left alone). Judged by the job, not an error here.
      command: { file: 'e2fsck', args: ['-f', '-n', raw], mutates: false, okCodes: [0, 4] },
    },
    fsckFix: {
      title:
        'verify, only if that found something: let e2fsck repair the copy as a restore would (journal replay, orphan inodes), then check again',
      command: { file: 'e2fsck', args: ['-f', '-y', raw], mutates: true, okCodes: [0, 1, 4] },
    },
    contains: mustContain.map((p) => ({
      title: `verify: the copy holds ${p}`,
      // debugfs exits 0 even when the path is missing: the job reads its output.
      command: { file: 'debugfs', args: ['-R', `stat "${p}"`, raw], mutates: false },
    })),
  };
}

function ownSnapshotRemove(vg: string, name: string, lv: LvInfo, root: string): Command {
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

export interface RestoreInput {
  state: VgState;
  config: Config;
  paths: ImagePaths;
  manifest: Manifest;
  /**
   * Where the image is unpacked to a sparse copy first (beside the image), or null when that file
   * system has no room for it or is read-only: then the image is streamed into the LV.
   */
  unpackTo: string | null;
  signal?: AbortSignal;
}

/** Room an unpacked copy needs beside the image: the data in use, a tenth more, and 64 MiB. */
export const unpackRoom = (manifest: Manifest): number =>
  Math.ceil(manifest.filesystem.usedBytes * 1.1) + 64 * 1024 * 1024;

const signalOf = (input: { signal?: AbortSignal }) => (input.signal ? { signal: input.signal } : {});

/**
 * Write an image into lv-root. Checks that protect data come first (they throw): the target must
 * exist, not be in use and be large enough. With room beside the image, it is first unpacked to a
 * sparse copy, before anything in the VG is touched (a damaged frame or a full directory stops
 * there); then the old restore points are removed, the whole LV is zeroed (blkdiscard --zeroout: a
 * block the image does not write must not keep what lv-root had there before) and `e2image -ra`
 * writes only the blocks the file system uses: the time grows with the data, not with the LV.
 * Without room the image is streamed after the zeroing (`tar -x -O` gives every byte of the file
 * system, holes as zeros, and `dd conv=sparse` skips the zeros): correct, but the LV's whole size
 * crosses the pipes.
 */
export function planRestore(input: RestoreInput): ImagePlan {
  const { state, config, manifest, paths } = input;
  const names = namesOf(config);
  const root = requireRoot(state, names);
  const device = root.path || `/dev/${names.vg}/${names.root}`;
  if (root.merging) {
    throw new RefusedError(`a merge of a snapshot into ${names.vg}/${names.root} is pending`, {
      hint: 'let the merge finish (activate lv-root: reboot) before writing an image',
    });
  }
  if (root.attr[5] === 'o') {
    throw new RefusedError(
      `${names.vg}/${names.root} is in use (mounted or held open): an image cannot be written into it`,
      {
        hint: 'restore an image from the golden medium (the recovery boot), where lv-root is not mounted',
      },
    );
  }
  const fsBytes = manifest.filesystem.sizeBytes;
  if (fsBytes > root.sizeBytes) {
    throw new RefusedError(
      `the image's file system (${formatBytes(fsBytes)}) does not fit ${names.vg}/${names.root} (${formatBytes(root.sizeBytes)})`,
      { hint: 'extend lv-root (lvextend) first, or restore an image of a system of this size' },
    );
  }
  const notes = [
    `image ${paths.image}: ${manifest.filesystem.type} of ${formatBytes(fsBytes)} from ${manifest.host.hostname}, taken ${manifest.source.snapshotTime ?? manifest.createdAt}`,
    `everything in ${names.vg}/${names.root} (${formatBytes(root.sizeBytes)}) is replaced; the other LVs are not touched`,
  ];
  const steps: ImageStep[] = [];
  if (input.unpackTo) {
    notes.push(
      `the image is unpacked to ${input.unpackTo} (a sparse copy: ${formatBytes(manifest.filesystem.usedBytes)} of data) before anything in ${names.vg} is touched, then only the blocks in use are written; the copy is removed afterwards`,
    );
    steps.push({
      title: `unpack the image to a sparse copy beside it (zstd checks its frame checksums; ${names.root} is not touched yet)`,
      pipeline: {
        ...unpackPipeline(paths.image, input.unpackTo, manifest.archive !== null),
        ...signalOf(input),
      },
    });
  }
  for (const name of [names.snap, names.next]) {
    const lv = state.lvs.find((l) => l.name === name);
    if (!lv) continue;
    if (lv.kind !== 'snapshot' || lv.origin !== names.root) {
      throw new RefusedError(
        `${names.vg}/${name} is not a snapshot of ${names.root}; zshield will not remove it`,
      );
    }
    notes.push(
      `${name} (a restore point of the system being replaced) is removed first: writing every block of ${names.root} would overflow it`,
    );
    steps.push({ title: `remove ${name}`, command: lvRemoveCommand(names.vg, name) });
  }
  steps.push({
    title: `zero every block of ${device} (write-zeroes: done by the device or the kernel, nothing crosses a pipe)`,
    // Every block the image does not write must read as zeros afterwards: e2image leaves out
    // all-zero blocks, also those of files that really hold zeros. A thin or virtual disk does
    // this at once (unmap/write-zeroes); elsewhere the kernel writes the zeros.
    command: {
      file: 'blkdiscard',
      args: ['--zeroout', '--force', device],
      mutates: true,
      timeoutMs: 3_600_000,
    },
  });
  if (input.unpackTo) {
    steps.push({
      title: `write the blocks the file system uses into ${device}`,
      pipeline: {
        stages: [{ file: 'e2image', args: ['-ra', '-p', input.unpackTo, device], mutates: true }],
        mutates: true,
        ...signalOf(input),
      },
    });
  } else {
    notes.push(
      `no room for an unpacked copy in ${paths.dir} (needs ${formatBytes(unpackRoom(manifest))}, or it is read-only): the image is streamed into ${names.root}, which passes all of its ${formatBytes(fsBytes)} through the pipes`,
    );
    steps.push({
      title: `write the image's data into ${device}`,
      pipeline: {
        stages: [
          { file: 'zstd', args: ['-d', '-c', '-q', paths.image], mutates: false },
          // -O: the member's bytes to stdout, its holes as zeros (which dd then seeks over).
          ...(manifest.archive ? [{ file: 'tar', args: ['-x', '-O', '-f', '-'], mutates: false }] : []),
          {
            // sparse: a block of zeros is skipped, the device already holds zeros there. notrunc: a
            // no-op on the LV's block device, and what keeps a file-backed target its size.
            file: 'dd',
            args: [
              `of=${device}`,
              'bs=1M',
              'iflag=fullblock',
              'conv=sparse,notrunc,fsync',
              'status=progress',
            ],
            mutates: true,
          },
        ],
        mutates: true,
        ...signalOf(input),
      },
    });
  }
  steps.push({
    title: 'check and repair the written file system (journal replay, orphan inodes)',
    command: {
      file: 'e2fsck',
      args: ['-f', '-y', device],
      mutates: true,
      okCodes: [0, 1],
      timeoutMs: 3_600_000,
    },
  });
  if (fsBytes < root.sizeBytes) {
    notes.push(
      `the file system is grown to fill ${names.root} (${formatBytes(root.sizeBytes - fsBytes)} more)`,
    );
    steps.push({
      title: `grow the file system to the size of ${names.root}`,
      // The size given, not taken from the device: e2image leaves a file-backed target (tests, a
      // loop file) at the file system's size.
      command: {
        file: 'resize2fs',
        args: [device, `${root.sizeBytes / 1024}K`],
        mutates: true,
        timeoutMs: 3_600_000,
      },
    });
  }
  notes.push(`then a new ${names.snap} is taken (reason: post-restore)`);
  return { title: `Restore ${names.vg}/${names.root} from ${paths.image}`, notes, steps };
}
