import { existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { meterFor } from '../plan/progress.js';
import { runPlan } from '../plan/run.js';
import { type SigningKey, loadSigningKey, writeNewSigningKey } from '../system/signing.js';
import { type GoldenManifest, makeGoldenImage, manifestPathOf } from './golden-image.js';
import { commandOf } from '../system/command.js';
import { blockdevSizeArgv } from '../system/disk-commands.js';

/**
 * `golden image make` and `golden image key` as plans: what they would write and every check the
 * real run makes (the source holds something, the key loads, nothing released is overwritten, the
 * folder exists) run first, so a dry run fails where the real run would and writes nothing.
 */

/**
 * A name or version becomes part of file names (`<name>-<version>.img.zst` of golden update) and of
 * the image id every box reports: letters, digits and `.-_+`, starting with a letter or digit.
 */
const IDENT = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

export function checkIdent(option: string, value: string): void {
  if (!IDENT.test(value) || value.length > 128) {
    throw new UsageError(
      `${option} "${value}": use letters, digits and . - _ + (starting with a letter or digit, at most 128)`,
    );
  }
}

export interface MakeRequest {
  source: string;
  out: string;
  name: string;
  version: string;
  keyFile: string;
  /** Replace a released image (OUT or its manifest exists). */
  force: boolean;
}

export async function runGoldenMake(ctx: Context, o: MakeRequest): Promise<GoldenManifest | null> {
  checkIdent('--name', o.name);
  checkIdent('--image-version', o.version);
  const out = path.resolve(o.out);
  const manifest = manifestPathOf(out);
  const io: { key?: SigningKey; made?: GoldenManifest; size?: number } = {};
  const plan: Plan = {
    title: `Make golden image ${o.name}@${o.version} from ${o.source}`,
    notes: [
      'written under temporary names and renamed when complete: a half-made image never looks released',
    ],
    checks: [
      {
        title: `${o.source} exists and holds something`,
        run: async () => {
          io.size = await sourceHoldsData(ctx, o.source);
        },
      },
      {
        title: `the signing key ${o.keyFile} loads`,
        run: async () => {
          io.key = await loadSigningKey(o.keyFile);
        },
      },
      { title: `the folder ${path.dirname(out)} exists`, run: () => folderExists(out) },
      {
        title: o.force ? 'a released image there is replaced (--force)' : 'no released image is overwritten',
        run: () => {
          const there = [out, manifest].filter((f) => existsSync(f));
          if (there.length > 0 && !o.force) {
            throw new RefusedError(
              `${there.join(' and ')} exist(s): a released golden image is never overwritten`,
              { hint: 'give another OUT (or --image-version), or --force to replace it' },
            );
          }
        },
      },
    ],
    steps: [
      {
        title: `read ${o.source} to its end; write the chunked zstd image and its signed manifest`,
        edit: {
          files: [out, manifest],
          apply: async () => {
            // Many seconds for a real medium: bytes read of its size, on the one progress component.
            const meter = meterFor(ctx, `golden image make ${path.basename(out)}`, io.size!);
            try {
              io.made = await makeGoldenImage({
                source: o.source,
                out,
                name: o.name,
                version: o.version,
                key: io.key!,
                onProgress: (bytes) => meter.at(bytes),
              });
            } finally {
              meter.done();
            }
          },
        },
      },
    ],
  };
  const run = await runPlan(ctx, plan, { confirm: 'none' });
  return run.applied ? io.made! : null;
}

/** The source must have bytes: an empty file or device is not a golden medium (exit 6). Its size. */
async function sourceHoldsData(ctx: Context, source: string): Promise<number> {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(source);
  } catch {
    throw new NotFoundError(`${source} does not exist`);
  }
  let size = st.size;
  if (st.isBlockDevice()) {
    const r = await ctx.runner.run(commandOf(blockdevSizeArgv(source), { mutates: false }));
    size = Number(r.stdout.trim());
  } else if (!st.isFile()) {
    throw new UsageError(`${source} is neither a file nor a block device`);
  }
  if (size === 0) throw new RefusedError(`${source} is empty: it holds no golden medium, nothing to package`);
  // Readable now, not half-way through the real run.
  await (await open(source, 'r')).close();
  ctx.log.toFile('info', `source ${source}: ${formatBytes(size)}`);
  return size;
}

function folderExists(file: string): void {
  const dir = path.dirname(file);
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new NotFoundError(`the folder ${dir} does not exist`, { hint: `mkdir -p ${dir}` });
}

/** `golden image key FILE`: a new vendor key pair; an existing key is never overwritten. */
export async function runGoldenKey(ctx: Context, file: string): Promise<string | null> {
  const abs = path.resolve(file);
  let publicText: string | null = null;
  const plan: Plan = {
    title: `Make a new vendor signing key ${abs}`,
    notes: ['the private key is written 0600; the public key beside it, for clone.trustedKeys'],
    checks: [
      { title: `the folder ${path.dirname(abs)} exists`, run: () => folderExists(abs) },
      {
        title: 'no key is there already',
        run: () => {
          const there = [abs, `${abs}.pub`].filter((f) => existsSync(f));
          if (there.length > 0)
            throw new RefusedError(`${there.join(' and ')} exist(s): a signing key is never overwritten`);
        },
      },
    ],
    steps: [
      {
        title: 'generate an Ed25519 key pair and write it',
        edit: {
          files: [abs, `${abs}.pub`],
          apply: async () => {
            publicText = (await writeNewSigningKey(ctx.writes, abs, { writePublic: true })).publicText;
          },
        },
      },
    ],
  };
  // The public key is what stdout carries (`golden image key FILE > trusted.txt`): the plan goes
  // to the log unless it is all a dry run shows.
  // (--json: the dry run's plan is the document; a real run's plan goes to the log as here.)
  const run = await runPlan(ctx, plan, { confirm: 'none', ...(ctx.dryRun ? {} : { show: 'log' as const }) });
  return run.applied ? publicText : null;
}
