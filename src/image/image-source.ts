import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import type { Runner } from '../system/runner.js';

/**
 * Where an image file lives, told by what survives a reboot: the UUID of its file system and the
 * path inside that file system. An image restore run from the golden medium reads the image from
 * whatever the operator mounted (lv-data, a USB stick); after a power cut the golden medium's next
 * boot has nothing mounted, so the absolute path alone cannot find it again.
 */
export interface ImageSource {
  fsUuid: string;
  /** Absolute, from the root of that file system. */
  pathInFs: string;
}

interface FindmntJson {
  filesystems?: { target?: string; source?: string; fsroot?: string | null }[];
}

/**
 * The file system holding `file` (findmnt -T) and its UUID (blkid), or null when it has none (a
 * tmpfs, an overlay, no findmnt): then only the absolute path is recorded.
 */
export async function probeImageSource(runner: Runner, file: string): Promise<ImageSource | null> {
  if (!(await runner.which('findmnt')) || !(await runner.which('blkid'))) return null;
  let real: string;
  try {
    real = realpathSync(file);
  } catch {
    return null;
  }
  const found = await runner.run({
    file: 'findmnt',
    args: ['-J', '--nofsroot', '-o', 'TARGET,SOURCE,FSROOT', '-T', real],
    mutates: false,
    okCodes: [0, 1],
  });
  let fs: NonNullable<FindmntJson['filesystems']>[number] | undefined;
  try {
    fs = (JSON.parse(found.stdout || '{}') as FindmntJson).filesystems?.[0];
  } catch {
    return null;
  }
  if (!fs?.target || !fs.source?.startsWith('/dev/')) return null;
  const uuid = await runner.run({
    file: 'blkid',
    args: ['-s', 'UUID', '-o', 'value', fs.source],
    mutates: false,
    okCodes: [0, 2],
  });
  const fsUuid = uuid.stdout.trim();
  if (!fsUuid) return null;
  return { fsUuid, pathInFs: path.posix.join(fs.fsroot || '/', path.posix.relative(fs.target, real)) };
}

/** Where an image's file system is mounted (read-only) to finish a cut restore from it. */
export const imageSourceMount = (runDir: string) => path.join(runDir, 'image-source');

/** The image of a cut restore: a file at its recorded path, or on a file system not mounted. */
export type FoundImage =
  | { file: string }
  | { device: string; source: ImageSource; mountPoint: string; file: string };

/**
 * The image of a cut restore, found again without changing anything: at its recorded path when
 * that is there, else the device holding its file system (found by UUID), to be mounted read-only
 * under the run directory for the restore (a step of the resume's plan; a read-only mount also
 * keeps the restore from unpacking a copy beside the image: it streams). Null when neither is found.
 */
export async function findImage(
  ctx: Pick<Context, 'runner' | 'config'>,
  recorded: { image: string | null; source: ImageSource | null },
): Promise<FoundImage | null> {
  if (recorded.image && existsSync(recorded.image)) return { file: recorded.image };
  const src = recorded.source;
  if (!src) return null;
  const dev = await ctx.runner.run({
    file: 'blkid',
    args: ['-U', src.fsUuid],
    mutates: false,
    okCodes: [0, 2],
  });
  const device = dev.stdout.trim();
  if (!device) return null;
  const mountPoint = imageSourceMount(ctx.config.paths.runDir);
  return { device, source: src, mountPoint, file: path.join(mountPoint, src.pathInFs) };
}
