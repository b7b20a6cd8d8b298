import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { NotFoundError, RefusedError } from '../errors.js';
import { type Meter, meterFor } from '../plan/progress.js';
import { probeDisks } from '../system/disks.js';
import {
  type GoldenManifest,
  type VerifyReport,
  chunkLength,
  loadManifest,
  readFully,
  verifyGoldenImage,
} from './golden-image.js';
import { matchesHash } from './target-writer.js';
import { commandOf } from '../system/command.js';
import { blockdevFlushArgv } from '../system/disk-commands.js';

export interface DiskCheck {
  manifest: GoldenManifest;
  keyId: string;
  device: string;
  badChunks: number[];
}

/**
 * `golden image verify IMAGE --target DEVICE`: a disk written earlier (by `golden image write`,
 * `clone receive` or `dd`) read back and checked chunk by chunk against the image's signed
 * manifest. Only the manifest is needed, not the image file. Reads only.
 */
export async function verifyWrittenDisk(
  ctx: Context,
  image: string,
  target: string,
  onChunk?: (i: number, of: number) => void,
): Promise<DiskCheck> {
  const signed = await loadManifest(image, ctx.config.clone.trustedKeys);
  const m = signed.payload;
  const device = await devicePath(ctx, target);
  if (statSync(device).isBlockDevice()) {
    // Drops the kernel's cached copy so the medium itself is read; changes no data.
    await ctx.runner.run(commandOf(blockdevFlushArgv(device), { mutates: false }));
  }
  const fh = await open(device, 'r');
  const badChunks: number[] = [];
  const meter = meterFor(ctx, `golden image verify ${device}`, m.size);
  try {
    for (let i = 0; i < m.chunks.length; i++) {
      const buf = await readFully(fh, chunkLength(m, i), i * m.chunkSize);
      if (buf.length !== chunkLength(m, i) || !matchesHash(buf, m.chunks[i]!.sha256)) badChunks.push(i);
      onChunk?.(i, m.chunks.length);
      meter.at(i * m.chunkSize + chunkLength(m, i));
    }
  } finally {
    meter.done();
    await fh.close();
  }
  return { manifest: m, keyId: signed.keyId, device, badChunks };
}

/** A path (device or file) as given, or a disk's serial or WWN. */
async function devicePath(ctx: Context, target: string): Promise<string> {
  if (target.startsWith('/') || target.startsWith('.')) {
    try {
      statSync(target);
    } catch {
      throw new NotFoundError(`${target} does not exist`);
    }
    return target;
  }
  const probe = await probeDisks(ctx.runner);
  const found = probe.disks.filter((d) => d.serial === target || (d.wwn !== '' && d.wwn === target));
  if (found.length === 0) throw new NotFoundError(`no disk with serial or WWN "${target}"`);
  if (found.length > 1) throw new RefusedError(`more than one disk matches "${target}"`);
  return found[0]!.path;
}

/**
 * `golden image verify IMAGE` (and the check before a write): the image file checked against its
 * signed manifest, with progress (raw bytes checked of the image's size): many seconds for a
 * medium of gigabytes.
 */
export async function verifyImageFile(
  ctx: Pick<Context, 'config' | 'log' | 'doc'>,
  image: string,
): Promise<VerifyReport> {
  // The total is the manifest's, known once verifyGoldenImage has read it.
  const held: { meter?: Meter } = {};
  try {
    return await verifyGoldenImage(image, ctx.config.clone.trustedKeys, (done, total) => {
      held.meter ??= meterFor(ctx, `golden image verify ${path.basename(image)}`, total);
      held.meter.at(done);
    });
  } finally {
    held.meter?.done();
  }
}
