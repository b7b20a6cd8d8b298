import { accessSync, constants, rmSync } from 'node:fs';
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
import {
  type ImagePlan,
  formatImagePlan,
  imagePlanToJson,
  planRestore,
  toolsOfImagePlan,
  unpackRoom,
} from './plan.js';
import { withProgress } from './progress.js';
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
  plan: ImagePlan;
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
  await requireTools(ctx.runner, [
    'lvs',
    'vgs',
    'zstd',
    'tar',
    'dd',
    'blkdiscard',
    'e2image',
    'e2fsck',
    'resize2fs',
    'lvremove',
    'lvcreate',
  ]);
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
    let state = await probeVg(ctx.runner, names.vg);
    const root = requireRoot(state, names);
    if (isRunningRoot(root)) {
      throw new RefusedError(
        `${names.vg}/${names.root} is the running root file system: an image cannot be written into it`,
        {
          hint: 'boot the golden medium (the recovery entries of the boot menu) and run zshield image restore there',
        },
      );
    }
    if (!root.active) {
      // From the golden medium the system disk's VG may not be active yet. Activation is not a
      // change of data; the write needs the device node.
      await ctx.runner.run({ file: 'vgchange', args: ['-ay', names.vg], mutates: false });
      state = await probeVg(ctx.runner, names.vg);
    }
    const plan = planRestore({
      state,
      config: ctx.config,
      paths,
      manifest,
      unpackTo: roomToUnpack(paths.dir, manifest) ? paths.rawPart : null,
      signal: ctx.signal,
    });
    ctx.out.print(opts.json ? JSON.stringify(imagePlanToJson(plan), null, 2) : formatImagePlan(plan));
    if (ctx.dryRun) return null;
    await requireTools(ctx.runner, toolsOfImagePlan(plan));
    if (opts.confirm !== 'yes') {
      throw new RefusedError('the image restore was not started: it needs confirmation', {
        hint: 'read the plan above, then run again with --yes (or --dry-run to only see the plan)',
      });
    }
    const n = plan.steps.length;
    try {
      for (const [i, step] of plan.steps.entries()) {
        ctx.log.info(`[${i + 1}/${n}] ${step.title}`);
        if ('pipeline' in step) await ctx.runner.pipeline(withProgress(ctx, step.pipeline));
        else if ('command' in step) await ctx.runner.run(step.command);
      }
    } finally {
      // The unpacked copy (when the plan made one) is a work file, whatever happened.
      rmSync(paths.rawPart, { force: true });
    }
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

/** An unpacked copy fits beside the image: the directory is writable and has room (plan.ts unpackRoom). */
function roomToUnpack(dir: string, manifest: Manifest): boolean {
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return false;
  }
  return freeBytesAt(dir) >= unpackRoom(manifest);
}
