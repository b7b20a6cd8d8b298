import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Context } from '../context.js';
import { argvOf } from '../system/command.js';
import { VERSION } from '../version.js';
import { ARCHIVE_MEMBER, listImages, planPrune } from './files.js';
import { type FsFacts, MANIFEST_FORMAT, type Manifest } from './manifest.js';
import type { CreatePlan } from './create-input.js';
import { prunePlan, runPrunePlan } from './prune.js';
import type { judgeContent } from './verify.js';

/**
 * The image job's files: its manifest, the final names (companions first, the image last),
 * durable writes, the leftovers of a job that did not finish, and the pruning of this host's own
 * images after a new one (create.ts).
 */

export function manifestOf(
  ctx: Context,
  plan: CreatePlan,
  o: { kind: string; attempt: number },
  r: { fs: FsFacts; content: ReturnType<typeof judgeContent>; sha256: string; imageBytes: number; t0: Date },
): Manifest {
  const zstd = plan.compressor;
  return {
    format: MANIFEST_FORMAT,
    image: path.basename(plan.paths.image),
    createdAt: ctx.clock.now().toISOString(),
    agent: { name: 'zshield', version: VERSION },
    host: { hostname: hostname(), kind: o.kind },
    source: {
      vg: plan.source.vg,
      lv: plan.source.lv,
      snapshot: plan.source.snapshot,
      kind: plan.source.kind,
      snapshotTime: plan.source.time.toISOString(),
      snapshotReason: plan.source.reason,
      lvSizeBytes: plan.source.lvSizeBytes,
    },
    filesystem: r.fs,
    compression: {
      format: 'zstd',
      // The options that shape the file (not where this run wrote it).
      command: argvOf(zstd).filter((a, i, all) => !['-f', '-c', '-o'].includes(a) && all[i - 1] !== '-o'),
      frameChecksum: zstd.args.includes('--check'),
    },
    // stream: the raw file system as e2image gives it, compressed; sparse: a tar --sparse of it.
    archive: plan.layout === 'sparse' ? { format: 'tar-sparse', member: ARCHIVE_MEMBER } : null,
    identity: plan.identity,
    sizes: { imageBytes: r.imageBytes, rawBytes: r.content.rawBytes },
    checksums: { sha256: r.sha256 },
    verification: {
      at: ctx.clock.now().toISOString(),
      fsck: r.content.fsck,
      contains: r.content.contains,
      tries: o.attempt,
    },
    durationMs: ctx.clock.now().getTime() - r.t0.getTime(),
  };
}

/** Final names: the companions first, the image last, so an .img.zst under its final name always has its checksum and manifest beside it. */
export function publish(plan: CreatePlan): void {
  renameSync(plan.paths.sumPart, plan.paths.sum);
  renameSync(plan.paths.manifestPart, plan.paths.manifest);
  renameSync(plan.paths.imagePart, plan.paths.image);
  fsyncFile(plan.paths.dir);
}

/** Stale work files and orphaned companions of this host's images (no job runs: we hold the pid file). */
export function removeLeftovers(ctx: Context, kind: string): void {
  const listing = listImages(ctx.config.image.dir);
  const own = {
    images: listing.images.filter((e) => e.kind === kind),
    parts: listing.parts.filter((f) => f.name.startsWith(`zshield-${kind}-`)),
  };
  const plan = planPrune(own, Number.MAX_SAFE_INTEGER, false);
  for (const f of [...plan.parts, ...plan.orphans]) {
    ctx.log.warn(`image: removing ${f.path}, left by an image job that did not finish`);
    rmSync(f.path, { force: true });
  }
}

export async function pruneOwn(ctx: Context, kind: string): Promise<string[]> {
  const listing = listImages(ctx.config.image.dir);
  const plan = planPrune(
    { images: listing.images.filter((e) => e.kind === kind), parts: [] },
    ctx.config.image.keep,
    true,
  );
  try {
    return await runPrunePlan(ctx, prunePlan(ctx.config.image.dir, kind, plan, true), 'log');
  } catch (err) {
    ctx.log.warn(`image: pruning old images failed: ${(err as Error).message}`);
    return [];
  }
}

export function writeDurable(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o644 });
  fsyncFile(file);
}

export function fsyncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
