import path from 'node:path';
import { RefusedError } from '../errors.js';
import type { Check, EditStep, Step } from '../plan/plan.js';
import { type ImagePaths, imagePaths } from './files.js';
import { type VerifySteps, fsCheckSteps, planVerify, verifySteps } from './plan-verify.js';
import { namesOf } from '../names/snapshots.js';
import { fromSnap0, fromTemporary, refuseUnimageable, removeTempStep, spaceOf } from './create-source.js';
import { copySteps, identitySteps, removeStep } from './create-copy.js';

import {
  type CreateActions,
  type CreateFindings,
  type CreateInput,
  type CreatePlan,
  type ImageLayout,
  layoutFor,
  noActions,
  type SourceInfo,
} from './create-input.js';

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
