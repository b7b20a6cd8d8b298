import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { InterruptedError, NotFoundError } from '../errors.js';
import { backupFileName, parseBackupName } from '../names/backup-files.js';

/**
 * An image is three files with one name, the backup naming that remote copy and its retention
 * use (remote/backups.ts):
 *
 *     zshield-<host>-<YYYYMMDDTHHMMSSZ>.img.zst         the file system: `e2image -ra` to a sparse
 *                                                       file, `tar --sparse` of it through zstd
 *     zshield-<host>-<YYYYMMDDTHHMMSSZ>.sha256          `sha256sum -c` format
 *     zshield-<host>-<YYYYMMDDTHHMMSSZ>.manifest.json   what it is (manifest.ts)
 *
 * The time is the snapshot's (the moment the image shows), in UTC. While a job works the files
 * carry `.part` (which remote copy never takes for a backup); they get their final names only once
 * the image is verified, the image last, so an `.img.zst` under its final name always has its two
 * companions.
 */
export const IMAGE_EXT = 'img.zst';
/** The name of the raw file system inside the image's tar archive. */
export const ARCHIVE_MEMBER = 'filesystem.raw';
export const SUM_EXT = 'sha256';
export const MANIFEST_EXT = 'manifest.json';
/** The decompressed copy a verification checks (sparse; removed after). */
export const RAW_EXT = 'raw';
const OURS = new Set([IMAGE_EXT, SUM_EXT, MANIFEST_EXT]);
const PART = '.part';
const PART_EXTS = new Set([IMAGE_EXT, SUM_EXT, MANIFEST_EXT, RAW_EXT]);

/** The backup kind of this host's images: its name, in the characters the naming allows. */
export function hostKind(name: string = hostname()): string {
  const short = name.split('.')[0] ?? '';
  const clean = short.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return clean || 'appliance';
}

export interface ImagePaths {
  dir: string;
  /** `zshield-<host>-<stamp>`. */
  base: string;
  image: string;
  sum: string;
  manifest: string;
  imagePart: string;
  sumPart: string;
  manifestPart: string;
  rawPart: string;
}

export function imagePaths(dir: string, kind: string, time: Date): ImagePaths {
  const image = backupFileName(kind, time, IMAGE_EXT);
  return pathsOf(dir, image.slice(0, -IMAGE_EXT.length - 1));
}

function pathsOf(dir: string, base: string): ImagePaths {
  const p = (ext: string) => path.join(dir, `${base}.${ext}`);
  return {
    dir,
    base,
    image: p(IMAGE_EXT),
    sum: p(SUM_EXT),
    manifest: p(MANIFEST_EXT),
    imagePart: p(IMAGE_EXT) + PART,
    sumPart: p(SUM_EXT) + PART,
    manifestPart: p(MANIFEST_EXT) + PART,
    rawPart: p(RAW_EXT) + PART,
  };
}

/** The paths of an image given by its file (verify, restore), or null for a name that is not an image's. */
export function pathsOfImageFile(file: string): ImagePaths | null {
  const name = path.basename(file);
  const b = parseBackupName(name);
  if (!b || name !== `zshield-${b.kind}-${b.stamp}.${IMAGE_EXT}`) return null;
  return pathsOf(path.dirname(path.resolve(file)), `zshield-${b.kind}-${b.stamp}`);
}

/** `YYYYMMDDTHHMMSSZ` as a Date. */
export function stampTime(stamp: string): Date {
  return new Date(
    `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}T${stamp.slice(9, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13, 15)}Z`,
  );
}

export interface ImageFile {
  name: string;
  path: string;
  size: number;
}

/** One image in the directory: its files, whichever of the three exist. */
export interface ImageEntry {
  kind: string;
  stamp: string;
  time: Date;
  base: string;
  image: ImageFile | null;
  sum: ImageFile | null;
  manifest: ImageFile | null;
  /** All of its files, for deletion. */
  files: ImageFile[];
}

export interface DirListing {
  images: ImageEntry[];
  /** `.part` files of ours (an image, checksum, manifest or raw copy being made, or left by a crash). */
  parts: ImageFile[];
}

/**
 * The images in `dir`, newest first. Only regular files whose names are ours count: a symlink, a
 * directory, another module's backup (`zshield-log-....log.gz`) or any other name is not listed, so
 * nothing built on this listing can delete it. A missing directory is an empty one.
 */
export function listImages(dir: string): DirListing {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { images: [], parts: [] };
    if (code === 'ENOTDIR') {
      // A path the config gets wrong is the operator's to fix, not a bug to report.
      // The errno stays on it: status shows "cannot read <dir>: ENOTDIR" in its images line.
      const e = new NotFoundError(`image.dir ${dir} is not a directory`, {
        hint: 'set image.dir in the config to the directory that holds the images',
        cause: err,
      });
      throw Object.assign(e, { code });
    }
    throw err;
  }
  const byBase = new Map<string, ImageEntry>();
  const parts: ImageFile[] = [];
  for (const name of names.sort()) {
    const full = path.join(dir, name);
    const st = lstatSync(full, { throwIfNoEntry: false });
    if (!st?.isFile()) continue;
    const file = { name, path: full, size: st.size };
    if (name.endsWith(PART)) {
      const inner = name.slice(0, -PART.length);
      const ext = extOf(inner);
      if (ext && PART_EXTS.has(ext)) parts.push(file);
      continue;
    }
    const b = parseBackupName(name);
    const ext = extOf(name);
    if (!b || !ext || !OURS.has(ext)) continue;
    const base = `zshield-${b.kind}-${b.stamp}`;
    let e = byBase.get(base);
    if (!e) {
      e = {
        kind: b.kind,
        stamp: b.stamp,
        time: stampTime(b.stamp),
        base,
        image: null,
        sum: null,
        manifest: null,
        files: [],
      };
      byBase.set(base, e);
    }
    e.files.push(file);
    if (ext === IMAGE_EXT) e.image = file;
    else if (ext === SUM_EXT) e.sum = file;
    else e.manifest = file;
  }
  const images = [...byBase.values()].sort(
    (a, b) => b.stamp.localeCompare(a.stamp) || a.kind.localeCompare(b.kind),
  );
  return { images, parts };
}

/** The extension of one of our names (`img.zst` of `zshield-h-20260101T000000Z.img.zst`), or null. */
function extOf(name: string): string | null {
  const m = /^zshield-[A-Za-z0-9][A-Za-z0-9_.-]*-\d{8}T\d{6}Z\.(.+)$/.exec(name);
  return m ? m[1]! : null;
}

export interface PrunePlan {
  keep: number;
  /** Whole images (all their files), oldest last. */
  images: ImageEntry[];
  /** A checksum or manifest whose image is gone (a crash between renames, or a hand-deleted image). */
  orphans: ImageFile[];
  /** Work files left by a job that is no longer running. */
  parts: ImageFile[];
}

/**
 * Keep the newest `keep` images of each host (kind); the older ones go with their checksum and
 * manifest. Work files are only pruned when no image job runs (`jobRunning` false).
 */
export function planPrune(listing: DirListing, keep: number, jobRunning: boolean): PrunePlan {
  const plan: PrunePlan = { keep, images: [], orphans: [], parts: jobRunning ? [] : [...listing.parts] };
  const seen = new Map<string, number>();
  for (const e of listing.images) {
    if (!e.image) {
      if (!jobRunning) plan.orphans.push(...e.files);
      continue;
    }
    const n = (seen.get(e.kind) ?? 0) + 1;
    seen.set(e.kind, n);
    if (n > keep) plan.images.push(e);
  }
  return plan;
}

/** SHA-256 of a file, read as a stream (images are gigabytes). */
export async function sha256File(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(file, { highWaterMark: 1024 * 1024, ...(signal ? { signal } : {}) });
  try {
    for await (const chunk of stream) hash.update(chunk as Buffer);
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw new InterruptedError(`interrupted while reading ${file}`);
    throw err;
  }
  return hash.digest('hex');
}

/** The `.sha256` file's text: what `sha256sum -c` reads, run in the image's directory. */
export function sumFileText(hex: string, imageName: string): string {
  return `${hex}  ${imageName}\n`;
}

/** The checksum a `.sha256` file gives for `imageName`, or null when it has none for it. */
export function parseSumFile(text: string, imageName: string): string | null {
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line.trim());
    if (m && path.basename(m[2]!) === imageName) return m[1]!.toLowerCase();
  }
  return null;
}
