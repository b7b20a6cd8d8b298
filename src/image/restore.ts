import { accessSync, constants } from 'node:fs';
import type { Context } from '../context.js';
import { RefusedError, UsageError } from '../errors.js';
import { type BackupOutcome, backupLocked } from '../snapshot/backup.js';
import { namesOf, requireRoot } from '../snapshot/rotation.js';
import { acquireLvmLock } from '../system/lock.js';
import { probeVg } from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import { requireTools } from '../system/tools.js';
import { pathsOfImageFile } from './files.js';
import { claimImageJob } from './job.js';
import type { Manifest } from './manifest.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { planRestore, unpackRoom } from './plan-restore.js';
import { freeBytesAt } from './space.js';
import { checkSums } from './verify.js';

export interface RestoreOptions {
  /** 'yes': confirmed by --yes; 'ask': show the plan and refuse (the operator runs again with --yes). */
  confirm: 'yes' | 'ask';
  json?: boolean;
  /** How long to queue behind another holder of the LVM lock. */
  waitMs: number;
}

export interface RestoreOutcome {
  plan: Plan;
  backup: BackupOutcome | null;
}

/**
 * `zshield image restore FILE`: write a verified image into lv-root, from the golden medium.
 * Before anything is touched: the image matches its checksum and manifest (else VerifyError, 10),
 * lv-root is not the running root nor otherwise in use, and the image's file system fits it (else
 * RefusedError, 6). Then the plan is shown and, with --yes, applied: old snapshots removed, the
 * image written, the file system checked (and grown to the LV), a new snap0 taken.
 */
export async function runImageRestore(
  ctx: Context,
  file: string,
  opts: RestoreOptions,
): Promise<RestoreOutcome | null> {
  const paths = pathsOfImageFile(file);
  if (!paths) {
    throw new UsageError(
      `${file} is not named like a zshield image (zshield-<host>-<YYYYMMDDTHHMMSSZ>.img.zst)`,
    );
  }
  const names = namesOf(ctx.config);
  // The image is checked before anything else, and before the LVM lock is taken: reading a large
  // image for its checksum takes a while, and a damaged one stops here.
  const { manifest } = await checkSums(ctx, paths);
  await requireTools(ctx.runner, ['lvs', 'vgs']);
  const lock = ctx.dryRun
    ? null
    : await acquireLvmLock({
        runDir: ctx.config.paths.runDir,
        log: ctx.log,
        purpose: 'image restore',
        waitMs: opts.waitMs,
      });
  let job: ReturnType<typeof claimImageJob> | null = null;
  try {
    if (!ctx.dryRun) job = claimImageJob(ctx.config.paths.runDir, 'image restore', ctx.log);
    const state = await probeVg(ctx.runner, names.vg);
    const root = requireRoot(state, names);
    if (isRunningRoot(root)) {
      throw new RefusedError(
        `${names.vg}/${names.root} is the running root file system: an image cannot be written into it`,
        {
          hint: 'boot the golden medium (the recovery entries of the boot menu) and run zshield image restore there',
        },
      );
    }
    const plan = planRestore({
      state,
      config: ctx.config,
      paths,
      manifest,
      // An image of the raw layout streams straight into the zeroed LV (dd skips its zeros); one
      // of the tar layout (made before) is unpacked beside it first where there is room.
      unpackTo: manifest.archive !== null && roomToUnpack(paths.dir, manifest) ? paths.rawPart : null,
      signal: ctx.signal,
    });
    const run = await runPlan(ctx, plan, {
      confirm: opts.confirm,
      what: 'The image restore',
      show: opts.json ? 'json' : 'out',
    });
    if (!run.applied) return null;
    // lv-root is never the running root here: the records of the system running this (the golden
    // medium) are not lv-root's; status reads this backup from snap0's tags.
    const backup = await backupLocked(ctx, 'post-restore', { record: false });
    ctx.out.print(
      `image restore done: ${names.vg}/${names.root} now holds ${paths.base} (${manifest.host.hostname}, ${manifest.source.snapshotTime ?? manifest.createdAt})${backup ? `; a new ${names.snap} was taken` : ''}`,
    );
    return { plan, backup };
  } finally {
    job?.release();
    await lock?.release();
  }
}

/** An unpacked copy fits beside the image: the directory is writable and has room (plan-restore.ts unpackRoom). */
function roomToUnpack(dir: string, manifest: Manifest): boolean {
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return false;
  }
  return freeBytesAt(dir) >= unpackRoom(manifest);
}
