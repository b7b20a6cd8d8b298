import * as z from 'zod';
import { parseSize, type SizeSpec } from './size.js';

/**
 * The `image` section of the config: full, verified images of lv-root's file system (where they
 * go, how many attempts, how many are kept), taken from a snapshot.
 */

const absPath = z.string().startsWith('/', 'must be an absolute path');

const sizeSpec = z
  .union([z.string(), z.number()])
  .transform((v, ctx): SizeSpec => {
    const r = parseSize(v, true);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    return r;
  })
  .meta({ format: 'size or percent' });

// A path inside the imaged file system, asked of debugfs between double quotes.
const pathInImage = absPath.refine(
  (s) => !/["\\\n\0]/.test(s),
  'must not contain a double quote, a backslash or a newline',
);

export const imageSchema = z
  .object({
    dir: absPath
      .default('/diskbackup')
      .describe('where images are written, not on lv-root itself; also a remote.sources entry by default'),
    source: z
      .enum(['temporary', 'snap0'])
      .default('temporary')
      .describe(
        'temporary: a snapshot of lv-root taken for the job and removed after the copy (the image is of now); snap0: the latest backup, read as it is (the image is of the restore point)',
      ),
    tries: z
      .number()
      .int()
      .min(1)
      .max(10)
      .default(1)
      .describe('attempts at a verified image before giving up'),
    keep: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(3)
      .describe('images kept in dir per host after a new one is verified (`image prune` uses it too)'),
    schedule: z
      .union([z.null(), z.literal('daily'), z.object({ weekday: z.number().int().min(0).max(6) }).strict()])
      .default(null)
      .describe(
        'when the daemon makes one, right after the daily backup: null (never), "daily", or {"weekday": 0-6} (0 = Sunday, local time); a box that was off catches up after its next backup',
      ),
    tempSnapshotSize: sizeSpec
      .default({ kind: 'percent', percent: 20 })
      .describe(
        'copy-on-write store of the temporary snapshot: a share of lv-root ("20%") or absolute ("4G")',
      ),
    mustContain: z
      .array(pathInImage)
      .default(['/etc/fstab'])
      .describe(
        'paths a verified image must hold: the check that it is this system and not some other file system',
      ),
  })
  .strict();

export type ImageConfig = z.output<typeof imageSchema>;
