import { type FileHandle, open, stat } from 'node:fs/promises';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { RefusedError, VerifyError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { meterFor } from '../plan/progress.js';
import { runPlan } from '../plan/run.js';
import { chunkLength, type GoldenManifest, imageIdOf, loadManifest, readChunk } from './golden-image.js';
import { type CloneTarget, type TargetRequest, resolveCloneTarget, targetFlush } from './write-target.js';
import { HEAD_BYTES, TargetWriter } from './target-writer.js';
import { verifyImageFile } from './verify-disk.js';

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
  const flush = targetFlush(ctx, target);
  const plan: Plan = {
    checks: [
      {
        // Before the head is wiped (and by a dry run): a damaged image destroys nothing.
        title: 'every chunk of the image matches its signed manifest',
        run: async () => {
          const r = await verifyImageFile(ctx, opts.image);
          if (r.badChunks.length > 0) {
            throw new VerifyError(
              `${opts.image}: chunk(s) ${r.badChunks.join(', ')} do not match the signed manifest: nothing was written`,
            );
          }
        },
      },
    ],
    title: `Write golden image ${imageIdOf(m)} (${formatBytes(m.size)}, ${m.chunks.length} chunks) onto ${target.describe}`,
    notes: [
      'every chunk is checked against the signed manifest as it is read; the target does not look good (no partition table) until it has been read back and verified',
    ],
    ...writeSteps(ctx, opts.image, m, target, flush),
  };
  const run = await runPlan(ctx, plan, { confirm: opts.yes ? 'yes' : 'ask', what: 'The write' });
  if (!run.applied) return null;
  return { imageId: imageIdOf(m), target: target.describe, chunks: m.chunks.length };
}

/**
 * The write's steps: the head wiped, every chunk written and read back, the head written last. The
 * writer and the image are opened by the first step and closed by the always-step: the plan shown
 * is the plan run (runPlan), and a dry run opens nothing.
 */
function writeSteps(
  ctx: Context,
  image: string,
  m: GoldenManifest,
  target: CloneTarget,
  flush: (() => Promise<void>) | undefined,
): Pick<Plan, 'steps' | 'always'> {
  const io: { src?: FileHandle; writer?: TargetWriter } = {};
  const edit = (apply: () => Promise<void>) => ({ files: [target.path], apply });
  return {
    steps: [
      {
        title: `wipe the first ${formatBytes(Math.min(HEAD_BYTES, m.size))} (partition table, boot code)`,
        edit: edit(async () => {
          io.src = await open(image, 'r');
          io.writer = await TargetWriter.open(ctx.writes, target.path, m.size, flush ? { flush } : {});
          await io.writer.wipeHead();
        }),
      },
      {
        title: 'write every chunk after it, checked against the signed manifest as it is read',
        edit: edit(async () => {
          const meter = meterFor(ctx, `golden image write ${target.path}`, m.size);
          try {
            for (let i = 0; i < m.chunks.length; i++) {
              await io.writer!.write(i * m.chunkSize, await readChunk(io.src!, m, i));
              meter.at(i * m.chunkSize + chunkLength(m, i));
            }
          } finally {
            meter.done();
          }
        }),
      },
      {
        title: 'read the target back and verify every chunk',
        edit: edit(async () => {
          const meter = meterFor(ctx, `golden image write: read back ${target.path}`, m.size);
          const bad = await io
            .writer!.verify(m, undefined, (i) => meter.at(i * m.chunkSize + chunkLength(m, i)))
            .finally(() => meter.done());
          if (bad.length > 0) {
            throw new VerifyError(
              `chunk(s) ${bad.join(', ')} read back wrong from ${target.path}: the first MiB was not written`,
            );
          }
        }),
      },
      {
        title: 'only then write the first MiB, and read it back',
        edit: edit(async () => {
          await io.writer!.commitHead();
          if ((await io.writer!.verify(m, [0])).length > 0)
            throw new VerifyError(`the first MiB read back wrong from ${target.path}`);
        }),
      },
    ],
    always: [
      {
        title: 'close the target and the image',
        edit: edit(async () => {
          await io.writer?.close();
          await io.src?.close();
        }),
      },
    ],
  };
}
