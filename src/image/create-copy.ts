import path from 'node:path';
import { formatBytes } from '../config/size.js';
import type { CommandStep, Step, EditStep } from '../plan/plan.js';
import { progressParsers } from '../plan/progress.js';
import { type Command, commandOf } from '../system/command.js';
import { ARCHIVE_MEMBER, type ImagePaths } from './files.js';
import type { Identity } from './identity.js';
import { blkidCommand, dumpe2fsCommand } from './manifest.js';
import { namesOf } from '../names/snapshots.js';
import {
  type CreateActions,
  type CreateFindings,
  type CreateInput,
  type ImageLayout,
  identityMountPoint,
  type SourceInfo,
} from './create-input.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

/**
 * The image job's copy steps (stream or sparse), its identity steps, and the read-only steps that
 * gather the facts for the manifest (plan-create.ts puts them in order).
 */
/** A step that removes the job's work files. */
export function removeStep(title: string, files: string[], actions: CreateActions): EditStep {
  return { title, edit: { files, apply: () => actions.removeFiles(files) } };
}

/** Another identity written into the job's own snapshot; `identity` null: only the unmount of a leftover mount. */
export function identitySteps(
  input: CreateInput,
  source: SourceInfo,
  identity: Identity | null,
  actions: CreateActions,
) {
  const mnt = identityMountPoint(input.config);
  const unmount = commandOf(umountArgv(mnt), { mutates: true, runsAfterAbort: true });
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
      command: commandOf(
        mountArgv(source.device, mnt, { type: input.fs.type, options: 'nodev,nosuid,noexec' }),
        { mutates: true },
      ),
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
 */
export function copySteps(
  input: CreateInput,
  source: SourceInfo,
  paths: ImagePaths,
  findings: CreateFindings,
  layout: ImageLayout,
  actions: CreateActions,
) {
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
  const image =
    layout === 'stream'
      ? [streamStep(input, source, paths, written)]
      : sparseSteps(input, source, paths, written, actions);
  return { read, image, compressor };
}

const copyTitle = (source: SourceInfo) => `image the file system of ${source.snapshot}`;
const signalOf = (input: CreateInput) => (input.signal ? { signal: input.signal } : {});

/** The stream layout: the file system's bytes read by dd into the compressor, tee and hash. */
function streamStep(input: CreateInput, source: SourceInfo, paths: ImagePaths, written: Command[]): Step {
  return {
    title: `${copyTitle(source)} (all of its ${formatBytes(input.fs.sizeBytes)}), compressed, to ${paths.imagePart}, hashing the bytes as they are written`,
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
      ...signalOf(input),
    },
  };
}

/** The sparse layout: e2image's blocks in use to a sparse file, then its data (not its holes) by tar. */
function sparseSteps(
  input: CreateInput,
  source: SourceInfo,
  paths: ImagePaths,
  written: Command[],
  actions: CreateActions,
): Step[] {
  const title = copyTitle(source);
  return [
    {
      title: `${title}: its blocks in use to a sparse file, ${paths.rawPart}`,
      progress: progressParsers.e2image,
      pipeline: {
        stages: [{ file: 'e2image', args: ['-ra', '-p', source.device, paths.rawPart], mutates: true }],
        mutates: true,
        ...signalOf(input),
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
        ...signalOf(input),
      },
    },
    removeStep('remove the sparse file', [paths.rawPart], actions),
  ];
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
