import { rmSync } from 'node:fs';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { UsageError } from '../errors.js';
import type { Plan, Step } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import {
  type DirListing,
  type ImageEntry,
  type ImageFile,
  hostKind,
  listImages,
  type PrunePlan,
  planPrune,
} from './files.js';
import { runningImageJob } from './job.js';
import { readManifest } from './manifest.js';

/** A prune as a plan: one deletion step per image (with its companions), one for leftovers. */
export interface ImagePrunePlan extends Plan {
  prune: PrunePlan;
}

export function prunePlan(dir: string, kind: string, prune: PrunePlan, jobRunning: boolean): ImagePrunePlan {
  const rm = (files: readonly ImageFile[]) => () => {
    for (const f of files) rmSync(f.path, { force: true });
  };
  const steps: Step[] = prune.images.map((e) => ({
    title: `delete ${e.base} (${e.files.length} file(s))`,
    edit: { files: e.files.map((f) => f.path), apply: rm(e.files) },
  }));
  const leftovers = [...prune.orphans, ...prune.parts];
  if (leftovers.length) {
    steps.push({
      title: 'delete files left by an image job that did not finish',
      edit: { files: leftovers.map((f) => f.path), apply: rm(leftovers) },
    });
  }
  const notes = jobRunning ? ['an image job is running: its work files are left alone'] : [];
  return { title: `Prune images of ${kind} in ${dir}: keep the newest ${prune.keep}`, notes, steps, prune };
}

/**
 * Run a prune plan (it only ever lists our own names). Returns the paths removed; a dry run removes
 * none, and says nothing was pruned.
 */
export async function runPrunePlan(
  ctx: Context,
  plan: ImagePrunePlan,
  show: 'out' | 'json' | 'log' | 'none',
): Promise<string[]> {
  const run = await runPlan(ctx, plan, { confirm: 'none', show });
  if (!run.applied) return [];
  const { images, orphans, parts, keep } = plan.prune;
  for (const e of images)
    ctx.log.info(`image: pruned ${e.base} (${e.files.length} file(s), keeping ${keep})`);
  for (const f of [...orphans, ...parts]) ctx.log.info(`image: removed the leftover ${f.name}`);
  return [...images.flatMap((e) => e.files), ...orphans, ...parts].map((f) => f.path);
}

export interface PruneOptions {
  /** Wins over image.keep. */
  keep?: number;
  /** Whose images (the host part of the names); default this host. */
  kind?: string;
  json?: boolean;
}

/**
 * `zshield image prune`: keep the newest N images of one host in image.dir. Names that are not
 * ours (anything but `zshield-<host>-<time>.{img.zst,sha256,manifest.json}` and their `.part`
 * work files) are never looked at, and neither are other hosts' images in a shared directory.
 */
export async function runImagePrune(
  ctx: Context,
  opts: PruneOptions,
): Promise<{ plan: PrunePlan; removed: string[] }> {
  const keep = opts.keep ?? ctx.config.image.keep;
  if (!Number.isInteger(keep) || keep < 1) throw new UsageError('--keep must be a whole number >= 1');
  const kind = opts.kind ?? hostKind();
  const listing = listImages(ctx.config.image.dir);
  const own: DirListing = {
    images: listing.images.filter((e) => e.kind === kind),
    parts: listing.parts.filter((f) => f.name.startsWith(`zshield-${kind}-`)),
  };
  const running = runningImageJob(ctx.config.paths.runDir) !== null;
  const plan = prunePlan(ctx.config.image.dir, kind, planPrune(own, keep, running), running);
  const removed = await runPrunePlan(ctx, plan, opts.json ? 'json' : 'out');
  return { plan: plan.prune, removed };
}

export interface ListedImage {
  file: string;
  host: string;
  time: string;
  sizeBytes: number | null;
  /** image, checksum and manifest all there. */
  complete: boolean;
  source: string | null;
  fsck: string | null;
  problem: string | null;
}

export function listedImages(dir: string): ListedImage[] {
  return listImages(dir).images.map((e: ImageEntry) => {
    let source: string | null = null;
    let fsck: string | null = null;
    let problem: string | null = null;
    if (e.manifest) {
      try {
        const m = readManifest(e.manifest.path);
        source = `${m.source.vg}/${m.source.snapshot}${m.source.snapshotReason ? ` (${m.source.snapshotReason})` : ''}`;
        fsck = m.verification.fsck;
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    const complete = !!(e.image && e.sum && e.manifest);
    if (!problem && !complete) {
      problem = `missing ${[!e.image && 'image', !e.sum && 'checksum', !e.manifest && 'manifest'].filter(Boolean).join(', ')}`;
    }
    return {
      file: e.image?.path ?? `${e.base}.img.zst`,
      host: e.kind,
      time: e.time.toISOString(),
      sizeBytes: e.image?.size ?? null,
      complete,
      source,
      fsck,
      problem,
    };
  });
}

export function formatImageList(dir: string, images: ListedImage[]): string {
  if (images.length === 0) return `no images in ${dir}`;
  const lines = [`images in ${dir} (newest first):`];
  for (const i of images) {
    const size = i.sizeBytes === null ? '-' : formatBytes(i.sizeBytes);
    lines.push(
      `  ${i.time}  ${i.host}  ${size.padStart(9)}  ${i.source ?? '?'}${i.fsck ? `, fsck ${i.fsck}` : ''}${i.problem ? `  [${i.problem}]` : ''}`,
    );
  }
  return lines.join('\n');
}
