import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { NotFoundError, RefusedError, UsageError, VerifyError } from '../errors.js';
import type { CommandLineConfirm } from '../output.js';
import { backupLocked, type BackupOutcome, requireRoot } from '../restore-point/index.js';
import { acquireLvmLock } from '../system/lock.js';
import { parseVgs, probeVg, vgsCommand } from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import { requireTools } from '../system/tools.js';
import { pathsOfImageFile } from './files.js';
import { claimImageJob } from './job.js';
import type { Manifest } from './manifest.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { planRestore, unpackRoom } from './plan-restore.js';
import { type ImageSource, findImage, probeImageSource } from './image-source.js';
import {
  type ImageRestoreMark,
  describeUnfinished,
  markIdFor,
  unfinishedImageRestore,
} from './restore-mark.js';
import { freeBytesAt } from './space.js';
import { checkSums } from './verify.js';
import { namesOf } from '../names/snapshots.js';
import { commandOf } from '../system/command.js';
import { mountArgv, umountArgv } from '../system/mount-commands.js';

export interface RestoreOptions {
  /** 'yes': confirmed by --yes; 'ask': show the plan and refuse (the operator runs again with --yes). */
  confirm: CommandLineConfirm;
  json?: boolean;
  /** How long to queue behind another holder of the LVM lock. */
  waitMs: number;
  /** Finishing a restore cut short (resumeImageRestore): the mark it left. */
  resume?: ImageRestoreMark;
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
  const names = namesOf(ctx.config);
  // The image is checked before anything else, and before the LVM lock is taken: reading a large
  // image for its checksum takes a while, and a damaged one stops here.
  const { paths, manifest, sha256 } = await checkedImage(ctx, file, opts.resume);
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
          hint: `boot the golden medium (the recovery entries of the boot menu) and run zshield image restore ${file} --yes there`,
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
      mark: {
        id: markIdFor(sha256),
        // Resumed from a mount of its own: the record keeps saying where the image was.
        image: opts.resume ? opts.resume.image : paths.image,
        source: opts.resume ? opts.resume.source : await probeImageSource(ctx.runner, paths.image),
        sha256,
        vg: names.vg,
        startedAt: opts.resume?.startedAt || ctx.clock.now().toISOString(),
      },
    });
    const run = await runPlan(ctx, plan, {
      confirm: opts.confirm,
      what: 'the image restore',
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

/** The image named like one, matching its checksum and manifest (and, resuming, the record). */
async function checkedImage(ctx: Context, file: string, resume: ImageRestoreMark | undefined) {
  const paths = pathsOfImageFile(file);
  if (!paths) {
    throw new UsageError(
      `${file} is not named like a zshield image (zshield-<host>-<YYYYMMDDTHHMMSSZ>.img.zst)`,
    );
  }
  const { manifest, sha256 } = await checkSums(ctx, paths);
  if (resume && resume.sha256 !== sha256) {
    throw new VerifyError(
      `${paths.image} is not the image the cut restore was writing (SHA-256 ${sha256}, the record says ${resume.sha256})`,
      { hint: 'restore an image by hand: zshield image restore FILE --yes' },
    );
  }
  return { paths, manifest, sha256 };
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

/**
 * For the boot-time resume (src/recovery/): finish an image restore that a power cut left marked on
 * the VG, by running the same restore again with the image its tags record (found at its path, or
 * on its file system mounted read-only: the golden medium's boot has nothing mounted). Its checksum
 * is checked again before the first write, and the whole LV is written again, so where the cut came
 * does not matter. Returns false when nothing is marked. Throws NotFoundError when the mark does
 * not say which image or the image is not found (the boot hook shows it; the operator restores by
 * hand).
 *
 * Through runPlan like every change: the image at its path is the image restore itself (a dry run
 * checks the image and the VG and shows its plan); an image on a file system not mounted is a
 * plan of its own (mount it read-only, the restore, unmount), whose dry run stops before the mount.
 */
export async function resumeImageRestore(ctx: Context, opts: { waitMs?: number } = {}): Promise<boolean> {
  const vgName = ctx.config.lvm.vg;
  const out = await ctx.runner.run({ ...vgsCommand(vgName), okCodes: [0, 5] });
  const vg = parseVgs(out.stdout).find((v) => v.name === vgName);
  const u = vg ? unfinishedImageRestore(vg) : null;
  if (!u) return false;
  if (!u.mark) {
    throw new NotFoundError(describeUnfinished(u), {
      hint: 'restore an image by hand from the golden medium: zshield image restore FILE --yes',
    });
  }
  const mark = u.mark;
  const found = await findImage(ctx, mark);
  if (!found) throw imageNotFound(mark);
  if (!ctx.dryRun) ctx.log.warn(`image restore: ${describeUnfinished(u)}; finishing it now`);
  const restore = (file: string) =>
    runImageRestore(ctx, file, { confirm: 'yes', waitMs: opts.waitMs ?? 60_000, resume: mark });
  if (!('device' in found)) {
    await restore(found.file);
    return true;
  }
  const { device, source, mountPoint, file } = found;
  const timeoutMs = 120_000;
  const plan: Plan = {
    title: `Finish the image restore cut short: write ${path.basename(source.pathInFs)} into ${vgName}/${ctx.config.lvm.rootLv} again`,
    notes: [
      describeUnfinished(u),
      `the image is on ${device} (file system ${source.fsUuid}), not mounted: it is mounted read-only on ${mountPoint} for the restore`,
      "the image's checksum and manifest are checked once it is mounted, before anything in the VG is touched; the restore's own plan is shown then",
    ],
    steps: [
      {
        title: `make the mount point ${mountPoint}`,
        edit: { files: [mountPoint], apply: () => void mkdirSync(mountPoint, { recursive: true }) },
      },
      {
        title: "mount the image's file system read-only",
        command: commandOf(mountArgv(device, mountPoint, { options: 'ro' }), { mutates: true, timeoutMs }),
      },
      {
        title: `restore ${file} (the image restore's own plan: the image checked first, then ${ctx.config.lvm.rootLv} written)`,
        edit: {
          files: [`/dev/${vgName}/${ctx.config.lvm.rootLv}`],
          apply: async () => {
            if (!existsSync(file)) throw imageNotFound(mark);
            ctx.log.info(
              `image restore: the image is on ${device} (file system ${source.fsUuid}), mounted read-only on ${mountPoint}`,
            );
            await restore(file);
          },
        },
      },
    ],
    always: [
      {
        title: "unmount the image's file system",
        command: commandOf(umountArgv(mountPoint), { mutates: true, timeoutMs }),
      },
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none', show: ctx.dryRun ? 'out' : 'log' });
  return true;
}

function imageNotFound(mark: ImageRestoreMark): NotFoundError {
  return new NotFoundError(
    `an image restore was cut short, and its image is not found at ${whereRecorded(mark.image, mark.source)}`,
    { hint: 'attach or mount the medium holding it, then run zshield image restore FILE --yes' },
  );
}

function whereRecorded(image: string | null, source: ImageSource | null): string {
  const onFs = source ? `${source.pathInFs} on the file system with UUID ${source.fsUuid}` : null;
  return [image, onFs].filter(Boolean).join(' or ');
}
