import { formatBytes, resolveSize } from '../config/size.js';
import { RefusedError, UsageError, VerifyError } from '../errors.js';
import type { CommandStep } from '../plan/plan.js';
import { labelOf, requireRoot } from '../restore-point/index.js';
import { type LvInfo, lvRemoveCommand, snapshotAllocation, snapshotCreateCommand } from '../system/lvm.js';
import { TAG_REASON, TAG_TIME } from '../names/lvm-tags.js';
import { namesOf } from '../names/snapshots.js';
import {
  type CreateActions,
  type CreateFindings,
  type CreateInput,
  IMAGE_SPACE_FACTOR,
  type ImageLayout,
  type SourceInfo,
  SPARSE_BELOW,
  tempSnapshotName,
} from './create-input.js';

/**
 * Where an image is read from (create-input.ts SourceInfo): snap0 as it is, or the job's own
 * temporary snapshot of lv-root (made, checked, removed); and the space the image needs.
 */
export function refuseUnimageable(input: CreateInput): void {
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

export function fromSnap0(input: CreateInput): Picked {
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

export function fromTemporary(input: CreateInput): Picked {
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

export function spaceOf(input: CreateInput, layout: ImageLayout): { needBytes: number; notes: string[] } {
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

export function removeTempStep(
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
