import path from 'node:path';
import type { Config } from '../config/schema.js';
import { RefusedError } from '../errors.js';
import type { Check, EditStep, Plan, Step } from '../plan/plan.js';
import type { VgState } from '../system/lvm.js';
import type { Command } from '../system/command.js';
import { type ImagePaths, imagePaths } from './files.js';
import type { Identity } from './identity.js';
import type { FsFacts } from './manifest.js';
import { type VerifySteps, fsCheckSteps, planVerify, verifySteps } from './plan-verify.js';
import { namesOf } from '../names/snapshots.js';
import { fromSnap0, fromTemporary, refuseUnimageable, removeTempStep, spaceOf } from './create-source.js';
import { copySteps, identitySteps, removeStep } from './create-copy.js';

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

function unlockStep(input: CreateInput, why: string, actions: CreateActions): EditStep {
  const lockFile = input.lockFile ?? path.join(input.config.paths.runDir, 'lvm.lock');
  return {
    title: `let go of the LVM lock (${why})`,
    edit: { files: [lockFile], apply: () => actions.unlock() },
  };
}
