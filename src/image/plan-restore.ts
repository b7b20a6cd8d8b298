import { rmSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { formatBytes } from '../config/size.js';
import { RefusedError } from '../errors.js';
import type { Plan, Step } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import { requireRoot } from '../restore-point/index.js';
import { type VgState, decodeLvAttr, lvRemoveCommand, lvmCommand, vgActivateArgv } from '../system/lvm.js';
import type { ImagePaths } from './files.js';
import type { Manifest } from './manifest.js';
import { unpackPipeline } from './plan-verify.js';
import { type ImageRestoreMark, markSteps } from './restore-mark.js';
import { namesOf } from '../names/snapshots.js';

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
  /** The mark of this restore (set before the first destructive step, cleared at the end). */
  mark?: ImageRestoreMark;
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
 * crosses the pipes. A VG not yet active (from the golden medium) is activated as the first step:
 * a dry run does not activate it.
 */
export function planRestore(input: RestoreInput): Plan {
  const { config, manifest, paths } = input;
  const names = namesOf(config);
  const { root, device } = restoreTarget(input);
  const fsBytes = manifest.filesystem.sizeBytes;
  const notes = [
    `image ${paths.image}: ${manifest.filesystem.type} of ${formatBytes(fsBytes)} from ${manifest.host.hostname}, taken ${manifest.source.snapshotTime ?? manifest.createdAt}`,
    `everything in ${names.vg}/${names.root} (${formatBytes(root.sizeBytes)}) is replaced; the other LVs are not touched`,
  ];
  const steps: Step[] = [];
  if (!root.active) {
    notes.push(
      `${names.vg} is not active (a system disk seen from the golden medium): it is activated first`,
    );
    // Activation writes no data, but it changes device state (and starts a deferred merge): it is
    // a step of the plan, and a dry run leaves it out.
    steps.push({
      title: `activate ${names.vg} (the write needs lv-root's device node)`,
      command: lvmCommand(vgActivateArgv(names.vg)),
    });
  }
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
  const marks = input.mark ? markSteps(input.mark, input.state.vg.tags) : null;
  if (marks) {
    notes.push(
      `${names.vg} is marked before the first destructive step and unmarked once ${names.root} is whole: a restore cut short (power cut) is finished by the golden medium's next boot`,
    );
    steps.push(...marks.set);
  }
  steps.push(...removeRestorePoints(input, notes));
  steps.push(zeroStep(device));
  steps.push(writeStep(input, device, notes));
  steps.push(...finishSteps(input, root.sizeBytes, device, notes));
  if (marks) steps.push(...marks.clear);
  notes.push(`then a new ${names.snap} is taken (reason: post-restore)`);
  const copy = input.unpackTo;
  return {
    title: `Restore ${names.vg}/${names.root} from ${paths.image}`,
    notes,
    steps,
    ...(copy
      ? {
          always: [
            {
              title: 'remove the unpacked copy',
              edit: { files: [copy], apply: () => rmSync(copy, { force: true }) },
            },
          ],
        }
      : {}),
  };
}

function restoreTarget(input: RestoreInput) {
  const { state, config, manifest } = input;
  const names = namesOf(config);
  const root = requireRoot(state, names);
  const device = root.path || `/dev/${names.vg}/${names.root}`;
  if (root.merging) {
    throw new RefusedError(`a merge of a snapshot into ${names.vg}/${names.root} is pending`, {
      hint: 'let the merge finish (activate lv-root: reboot) before writing an image',
    });
  }
  if (decodeLvAttr(root.attr).open) {
    throw new RefusedError(
      `${names.vg}/${names.root} is in use (mounted or held open): an image cannot be written into it`,
      { hint: 'restore an image from the golden medium (the recovery boot), where lv-root is not mounted' },
    );
  }
  const fsBytes = manifest.filesystem.sizeBytes;
  if (fsBytes > root.sizeBytes) {
    throw new RefusedError(
      `the image's file system (${formatBytes(fsBytes)}) does not fit ${names.vg}/${names.root} (${formatBytes(root.sizeBytes)})`,
      { hint: 'extend lv-root (lvextend) first, or restore an image of a system of this size' },
    );
  }
  return { root, device };
}

function removeRestorePoints(input: RestoreInput, notes: string[]): Step[] {
  const names = namesOf(input.config);
  const steps: Step[] = [];
  for (const name of [names.snap, names.next]) {
    const lv = input.state.lvs.find((l) => l.name === name);
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
  return steps;
}

function zeroStep(device: string): Step {
  return {
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
  };
}

function writeStep(input: RestoreInput, device: string, notes: string[]): Step {
  const { manifest, paths } = input;
  if (input.unpackTo) {
    return {
      title: `write the image's data into ${device}: the blocks the file system uses, from the copy`,
      progress: progressParsers.e2image,
      pipeline: {
        stages: [{ file: 'e2image', args: ['-ra', '-p', input.unpackTo, device], mutates: true }],
        mutates: true,
        ...signalOf(input),
      },
    };
  }
  const root = namesOf(input.config).root;
  notes.push(
    manifest.archive
      ? `no room for an unpacked copy in ${paths.dir} (needs ${formatBytes(unpackRoom(manifest))}, or it is read-only): the image is streamed into ${root}, which passes all of its ${formatBytes(manifest.filesystem.sizeBytes)} through the pipes`
      : `the image is streamed into ${root} (one pass: zstd checks every frame, dd writes only the blocks that are not zeros); its SHA-256 was checked against ${paths.sum} before anything was written`,
  );
  return {
    title: `write the image's data into ${device}`,
    progress: progressParsers.dd,
    pipeline: {
      stages: [
        { file: 'zstd', args: ['-d', '-c', '-q', paths.image], mutates: false },
        // -O: the member's bytes to stdout, its holes as zeros (which dd then seeks over).
        ...(manifest.archive ? [{ file: 'tar', args: ['-x', '-O', '-f', '-'], mutates: false }] : []),
        {
          // sparse: a block of zeros is skipped, the device already holds zeros there. notrunc: a
          // no-op on the LV's block device, and what keeps a file-backed target its size.
          file: 'dd',
          args: [`of=${device}`, 'bs=1M', 'iflag=fullblock', 'conv=sparse,notrunc,fsync', 'status=progress'],
          mutates: true,
        },
      ],
      mutates: true,
      ...signalOf(input),
    },
  };
}

function finishSteps(input: RestoreInput, lvBytes: number, device: string, notes: string[]): Step[] {
  const names = namesOf(input.config);
  const fsBytes = input.manifest.filesystem.sizeBytes;
  const steps: Step[] = [
    {
      title: 'check and repair the written file system (journal replay, orphan inodes)',
      command: {
        file: 'e2fsck',
        args: ['-f', '-y', device],
        mutates: true,
        okCodes: [0, 1],
        timeoutMs: 3_600_000,
      },
    },
  ];
  if (fsBytes < lvBytes) {
    notes.push(`the file system is grown to fill ${names.root} (${formatBytes(lvBytes - fsBytes)} more)`);
    steps.push({
      title: `grow the file system to the size of ${names.root}`,
      // The size given, not taken from the device: e2image leaves a file-backed target (tests, a
      // loop file) at the file system's size.
      command: {
        file: 'resize2fs',
        args: [device, `${lvBytes / 1024}K`],
        mutates: true,
        timeoutMs: 3_600_000,
      },
    });
  }
  return steps;
}
