import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { VerifyError } from '../errors.js';
import type { Command } from '../system/command.js';

/** The file system of the source, from `blkid -o export` and `dumpe2fs -h` (read-only, no mount). */
export interface FsFacts {
  type: string;
  uuid: string | null;
  label: string | null;
  blockSize: number;
  blockCount: number;
  freeBlocks: number;
  /** blockCount × blockSize: the raw image's size, what a restore target must hold. */
  sizeBytes: number;
  /** Blocks in use × blockSize: what e2image copies, and about what the image is before compression. */
  usedBytes: number;
}

export function blkidCommand(device: string): Command {
  // -p: probe the device itself, not blkid's cache (a snapshot carries its origin's UUID).
  return { file: 'blkid', args: ['-p', '-o', 'export', device], mutates: false };
}

export function dumpe2fsCommand(device: string): Command {
  return { file: 'dumpe2fs', args: ['-h', device], mutates: false };
}

/** `KEY=value` lines of `blkid -o export`. */
export function parseBlkid(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** `Name:   value` lines of `dumpe2fs -h`. */
export function parseDumpe2fs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z][A-Za-z0-9 _#/()-]*?):\s+(.*)$/.exec(line);
    if (m && !(m[1]! in out)) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** The facts, or null with the reason when this is not an ext2/3/4 file system e2image can copy. */
export function fsFacts(blkid: string, dumpe2fs: string): FsFacts | string {
  const b = parseBlkid(blkid);
  const type = b['TYPE'] ?? '';
  if (!/^ext[234]$/.test(type))
    return `holds ${type ? `a ${type} file system` : 'no file system blkid knows'}, not ext2/3/4`;
  const d = parseDumpe2fs(dumpe2fs);
  const blockSize = Number(d['Block size']);
  const blockCount = Number(d['Block count']);
  const freeBlocks = Number(d['Free blocks']);
  if (![blockSize, blockCount, freeBlocks].every((n) => Number.isInteger(n) && n >= 0) || blockSize === 0)
    return 'dumpe2fs -h gave no block size, block count and free blocks';
  return {
    type,
    uuid: b['UUID'] ?? null,
    label: b['LABEL'] ?? null,
    blockSize,
    blockCount,
    freeBlocks,
    sizeBytes: blockCount * blockSize,
    usedBytes: (blockCount - freeBlocks) * blockSize,
  };
}

export const MANIFEST_FORMAT = 'zshield-image/1';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const count = z.number().int().min(0);

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  /** The image's file name (not a path: the three files move together). */
  image: z.string().min(1),
  createdAt: z.string(),
  agent: z.object({ name: z.literal('zshield'), version: z.string() }),
  host: z.object({ hostname: z.string(), kind: z.string() }),
  source: z.object({
    vg: z.string(),
    lv: z.string(),
    /** The LV read: snap0, or the job's temporary snapshot. */
    snapshot: z.string(),
    kind: z.enum(['temporary', 'snap0']),
    snapshotTime: z.string().nullable(),
    snapshotReason: z.string().nullable(),
    lvSizeBytes: count,
  }),
  filesystem: z.object({
    type: z.string(),
    uuid: z.string().nullable(),
    label: z.string().nullable(),
    blockSize: count,
    blockCount: count,
    freeBlocks: count,
    sizeBytes: count,
    usedBytes: count,
  }),
  compression: z.object({
    format: z.literal('zstd'),
    command: z.array(z.string()),
    /** zstd's own checksum of the content in every frame, checked by each decompression. */
    frameChecksum: z.boolean(),
  }),
  /**
   * The image is a tar archive (GNU sparse) of one member, the raw file system, compressed. null:
   * the raw file system itself, compressed (images made before the archive layout; still read).
   */
  archive: z
    .object({ format: z.literal('tar-sparse'), member: z.string().min(1) })
    .nullable()
    .default(null),
  /** Another network identity written into the image (image create --hostname/--ip), or null. */
  identity: z.object({ hostname: z.string(), ip: z.string().nullable() }).nullable().default(null),
  sizes: z.object({ imageBytes: count, rawBytes: count }),
  checksums: z.object({ sha256: hex64 }),
  verification: z.object({
    at: z.string(),
    /** clean: e2fsck -fn found nothing. corrected: it needed what a restore's e2fsck -fy also does. */
    fsck: z.enum(['clean', 'corrected']),
    contains: z.array(z.string()),
    tries: z.number().int().min(1),
  }),
  durationMs: count,
});

export type Manifest = z.output<typeof manifestSchema>;

/** Read and check a manifest; anything wrong with it is a VerifyError (the image cannot be trusted). */
export function readManifest(file: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new VerifyError(
      code === 'ENOENT' ? `the manifest ${file} is missing` : `the manifest ${file} is not valid JSON`,
    );
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new VerifyError(
      `the manifest ${file} is not a zshield image manifest: ${i.path.join('.')}: ${i.message}`,
    );
  }
  return r.data;
}
