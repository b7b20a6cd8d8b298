import { open, stat } from 'node:fs/promises';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { RefusedError, VerifyError } from '../errors.js';
import { imageIdOf, loadManifest, readChunk } from './golden-image.js';
import { type TargetRequest, resolveCloneTarget } from './target.js';
import { HEAD_BYTES, TargetWriter } from './target-writer.js';

/**
 * `golden image write`: what the seed's production line did with `dd`, with a check. The image's
 * signature and every chunk are checked before the target is opened; the head is wiped first and
 * written last, after the whole target read back verified.
 */
export async function runGoldenWrite(
  ctx: Context,
  opts: { image: string; target: TargetRequest; yes: boolean },
): Promise<{ imageId: string; target: string; chunks: number } | null> {
  const signed = await loadManifest(opts.image, ctx.config.clone.trustedKeys);
  const m = signed.payload;
  const st = await stat(opts.image);
  if (st.size !== m.compressedSize) {
    throw new VerifyError(`${opts.image}: ${st.size} bytes, its manifest says ${m.compressedSize}`);
  }
  const target = await resolveCloneTarget(ctx, opts.target);
  if (target.sizeBytes !== null && target.sizeBytes < m.size) {
    throw new RefusedError(`${target.describe} is smaller than the image (${formatBytes(m.size)})`);
  }
  ctx.out.print(
    [
      `write golden image ${imageIdOf(m)} (${formatBytes(m.size)}, ${m.chunks.length} chunks) onto ${target.describe}`,
      `  1. wipe the first ${formatBytes(Math.min(HEAD_BYTES, m.size))} (partition table, boot code)`,
      `  2. write every chunk after it, checked against the signed manifest as it is read`,
      `  3. read the target back and verify every chunk`,
      '  4. only then write the first MiB',
    ].join('\n'),
  );
  if (ctx.dryRun) return null;
  if (!opts.yes) {
    throw new RefusedError('the write was not started: it erases the target and needs confirmation', {
      hint: 'read the plan above, then run again with --yes',
    });
  }
  const flush = target.isBlock
    ? async () => {
        await ctx.runner.run({ file: 'blockdev', args: ['--flushbufs', target.path], mutates: true });
      }
    : undefined;
  const src = await open(opts.image, 'r');
  const writer = await TargetWriter.open(target.path, m.size, flush ? { flush } : {});
  try {
    await writer.wipeHead();
    for (let i = 0; i < m.chunks.length; i++) {
      await writer.write(i * m.chunkSize, await readChunk(src, m, i));
    }
    const bad = await writer.verify(m);
    if (bad.length > 0) {
      throw new VerifyError(
        `chunk(s) ${bad.join(', ')} read back wrong from ${target.path}: the first MiB was not written`,
      );
    }
    await writer.commitHead();
    if ((await writer.verify(m, [0])).length > 0)
      throw new VerifyError(`the first MiB read back wrong from ${target.path}`);
  } finally {
    await writer.close();
    await src.close();
  }
  return { imageId: imageIdOf(m), target: target.describe, chunks: m.chunks.length };
}
