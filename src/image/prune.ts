import { rmSync } from 'node:fs';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { UsageError } from '../errors.js';
import {
  type DirListing,
  type ImageEntry,
  hostKind,
  listImages,
  type PrunePlan,
  planPrune,
} from './files.js';
import { runningImageJob } from './job.js';
import { readManifest } from './manifest.js';

/** Delete what a prune plan lists (it only ever lists our own names). Returns the paths removed. */
export function applyPrune(ctx: Pick<Context, 'log' | 'dryRun'>, plan: PrunePlan): string[] {
  const files = [...plan.images.flatMap((e) => e.files), ...plan.orphans, ...plan.parts];
  const removed: string[] = [];
  for (const f of files) {
    if (ctx.dryRun) continue;
    rmSync(f.path, { force: true });
    removed.push(f.path);
  }
  for (const e of plan.images)
    ctx.log.info(`image: pruned ${e.base} (${e.files.length} file(s), keeping ${plan.keep})`);
  for (const f of [...plan.orphans, ...plan.parts]) ctx.log.info(`image: removed the leftover ${f.name}`);
  return removed;
}

export interface PruneOptions {
  /** Wins over image.keep. */
  keep?: number;
  /** Whose images (the host part of the names); default this host. */
  kind?: string;
}

/**
 * `zshield image prune`: keep the newest N images of one host in image.dir. Names that are not
 * ours (anything but `zshield-<host>-<time>.{img.zst,sha256,manifest.json}` and their `.part`
 * work files) are never looked at, and neither are other hosts' images in a shared directory.
 */
export function runImagePrune(ctx: Context, opts: PruneOptions): { plan: PrunePlan; removed: string[] } {
  const keep = opts.keep ?? ctx.config.image.keep;
  if (!Number.isInteger(keep) || keep < 1) throw new UsageError('--keep must be a whole number >= 1');
  const kind = opts.kind ?? hostKind();
  const listing = listImages(ctx.config.image.dir);
  const own: DirListing = {
    images: listing.images.filter((e) => e.kind === kind),
    parts: listing.parts.filter((f) => f.name.startsWith(`zshield-${kind}-`)),
  };
  const running = runningImageJob(ctx.config.paths.runDir) !== null;
  const plan = planPrune(own, keep, running);
  const lines = [`Prune images of ${kind} in ${ctx.config.image.dir}: keep the newest ${keep}`];
  for (const e of plan.images) lines.push(`  delete ${e.files.map((f) => f.name).join(', ')}`);
  for (const f of [...plan.orphans, ...plan.parts])
    lines.push(`  delete ${f.name} (left by an unfinished job)`);
  if (running) lines.push('  note: an image job is running: its work files are left alone');
  if (lines.length === 1) lines.push('  No changes.');
  ctx.out.print(lines.join('\n'));
  return { plan, removed: applyPrune(ctx, plan) };
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
