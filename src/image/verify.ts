import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { CommandError, NotFoundError, RefusedError, UsageError, VerifyError } from '../errors.js';
import { type Plan, isCommand, isPipeline } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { argvOf } from '../system/command.js';
import { requireTools } from '../system/tools.js';
import { type ImagePaths, parseSumFile, pathsOfImageFile, sha256File } from './files.js';
import { claimImageJob } from './job.js';
import { type Manifest, readManifest } from './manifest.js';
import { type FsCheckSteps, type VerifySteps, planVerify, verifySteps } from './plan-verify.js';
import { freeBytesAt } from './space.js';

export interface ContentCheck {
  fsck: 'clean' | 'corrected';
  /** The unpacked file system's size in bytes. */
  rawBytes: number;
  contains: string[];
}

/** A failed verification step is the image's fault: a VerifyError (trying again may give a good one). */
export function asVerifyError(err: unknown, steps: VerifySteps | null): unknown {
  if (!steps) return err;
  if (!(err instanceof CommandError)) return err;
  const argv = err.argv.join(' ');
  const ours = verifySteps(steps).some((s) =>
    isPipeline(s)
      ? s.pipeline.stages.some((c) => argvOf(c).join(' ') === argv)
      : isCommand(s) && argvOf(s.command).join(' ') === argv,
  );
  if (!ours) return err;
  if (err.argv[0] === 'e2fsck' && err.argv.includes('-y'))
    return new VerifyError('image verification failed: e2fsck cannot repair the file system in the image');
  if (err.argv[0] === 'e2fsck')
    return new VerifyError('image verification failed: the file system in the image is not consistent');
  return new VerifyError(`image verification failed: ${err.message}`);
}

/**
 * What the verification steps found, judged: the copy's size, whether e2fsck had to repair it (as
 * a restore would), and that it holds the paths a system has. Call before the copy is removed.
 */
export function judgeContent(
  ctx: Pick<Context, 'log'>,
  steps: FsCheckSteps,
  raw: string | null,
  fsBytes: number,
): ContentCheck {
  // Checked where it is (the job's own snapshot): e2image's raw output is the file system's size.
  const rawBytes = raw === null ? fsBytes : statSync(raw).size;
  const fsck: ContentCheck['fsck'] = steps.findings.fsckModified ? 'corrected' : 'clean';
  if (fsck === 'corrected') {
    ctx.log.warn(
      'image: the file system needed what e2fsck -fy does at a restore (journal replay or orphan inodes); a restore makes the same corrections',
    );
  }
  const contains: string[] = [];
  for (const c of steps.contains) {
    const what = c.command.args[1]!.replace(/^stat "(.*)"$/, '$1');
    if (!/^Inode:\s*\d+/m.test(steps.findings.stat.get(what) ?? '')) {
      throw new VerifyError(`image verification failed: the image holds no ${what}; it is not a system`);
    }
    contains.push(what);
  }
  return { fsck, rawBytes, contains };
}

/** Unpack, repair as a restore would, check, look inside (plan-verify.ts). The copy is removed whatever happens. */
export async function checkContent(ctx: Context, steps: VerifySteps, raw: string): Promise<ContentCheck> {
  const plan: Plan = {
    title: `Verify the content of the image (a sparse copy, ${raw})`,
    notes: [],
    steps: verifySteps(steps),
  };
  try {
    await runPlan(ctx, plan, { confirm: 'none', show: 'none' });
    return judgeContent(ctx, steps, raw, 0);
  } catch (err) {
    throw asVerifyError(err, steps);
  } finally {
    rmSync(raw, { force: true });
  }
}

export interface SumCheck {
  sha256: string;
  manifest: Manifest;
  sizeBytes: number;
}

/**
 * The image is the one its checksum and manifest describe: the `.sha256` and the manifest both
 * name this file and give its SHA-256, which matches the bytes on disk. Any mismatch or missing
 * piece is a VerifyError.
 */
export async function checkSums(ctx: Context, paths: ImagePaths): Promise<SumCheck> {
  const name = path.basename(paths.image);
  if (!existsSync(paths.image)) throw new NotFoundError(`image ${paths.image} not found`);
  let sumText: string;
  try {
    sumText = readFileSync(paths.sum, 'utf8');
  } catch {
    throw new VerifyError(`the checksum file ${paths.sum} is missing: the image cannot be trusted`);
  }
  const listed = parseSumFile(sumText, name);
  if (!listed) throw new VerifyError(`${paths.sum} holds no checksum for ${name}`);
  const manifest = readManifest(paths.manifest);
  if (manifest.image !== name)
    throw new VerifyError(`the manifest ${paths.manifest} describes ${manifest.image}, not ${name}`);
  const sizeBytes = statSync(paths.image).size;
  ctx.log.info(`image: computing the SHA-256 of ${name} (${formatBytes(sizeBytes)})`);
  const sha256 = await sha256File(paths.image, ctx.signal);
  if (sha256 !== listed) {
    throw new VerifyError(
      `${name} does not match its checksum: SHA-256 ${sha256}, ${paths.sum} says ${listed}`,
      {
        hint: 'the file was damaged or changed after it was made; use another image',
      },
    );
  }
  if (manifest.checksums.sha256 !== sha256 || manifest.sizes.imageBytes !== sizeBytes) {
    throw new VerifyError(`${name} does not match its manifest (checksum or size differ)`);
  }
  return { sha256, manifest, sizeBytes };
}

export interface VerifyOutcome extends SumCheck {
  file: string;
  content: ContentCheck | null;
}

/** `zshield image verify FILE`: checksum and manifest, then (unless quick) the content. */
export async function runImageVerify(
  ctx: Context,
  file: string,
  opts: { quick: boolean },
): Promise<VerifyOutcome> {
  const paths = pathsOfImageFile(file);
  if (!paths) {
    throw new UsageError(
      `${file} is not named like a zshield image (zshield-<host>-<YYYYMMDDTHHMMSSZ>.img.zst)`,
    );
  }
  const sums = await checkSums(ctx, paths);
  if (opts.quick || ctx.dryRun) {
    if (ctx.dryRun && !opts.quick)
      ctx.out.print('(dry run: the content check, which writes an unpacked copy, is skipped)');
    return { file: paths.image, ...sums, content: null };
  }
  const steps = planVerify(
    paths.image,
    paths.rawPart,
    ctx.config.image.mustContain,
    sums.manifest.archive !== null,
    ctx.signal,
  );
  await requireTools(ctx.runner, ['zstd', 'e2fsck', 'debugfs']);
  const need = sums.manifest.filesystem.usedBytes;
  const free = freeBytesAt(paths.dir);
  if (free < need) {
    throw new RefusedError(
      `not enough space in ${paths.dir} to unpack the image for its check: need ${formatBytes(need)}, ${formatBytes(free)} free`,
      { hint: 'use --quick for the checksum alone' },
    );
  }
  const job = claimImageJob(ctx.config.paths.runDir, 'image verify', ctx.log);
  try {
    const content = await checkContent(ctx, steps, paths.rawPart);
    if (content.rawBytes !== sums.manifest.filesystem.sizeBytes) {
      throw new VerifyError(
        `the unpacked image is ${content.rawBytes} bytes, its manifest says ${sums.manifest.filesystem.sizeBytes}`,
      );
    }
    return { file: paths.image, ...sums, content };
  } finally {
    job.release();
  }
}
