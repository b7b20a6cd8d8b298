import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { ConfigError, NotFoundError, RefusedError, VerifyError } from '../errors.js';
import { type Signed, type SigningKey, signDocument, verifyDocument } from '../system/signing.js';
import { requireFolderFor } from '../system/writes.js';

/**
 * The golden image as a released artefact: the raw golden medium cut into fixed-size chunks, each
 * compressed as its own zstd frame, the frames concatenated. That is an ordinary .zst file (`zstd
 * -dc IMAGE | dd of=/dev/sdX` still works, as the seed's production line did), and each chunk can
 * be found and decompressed alone, which is what lets a failed receiver fetch only its bad chunks.
 * The manifest beside it, signed with the vendor's Ed25519 key, lists every chunk's hash and where
 * its frame is.
 */

export const GOLDEN_FORMAT = 'zshield-golden-image/1';
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);

export interface ChunkEntry {
  /** SHA-256 (hex) of the raw chunk. */
  sha256: string;
  /** Where the chunk's zstd frame starts in the image file, and its length. */
  zOffset: number;
  zLength: number;
}

export interface GoldenManifest {
  format: typeof GOLDEN_FORMAT;
  /** What the image is of (e.g. the appliance model); with the version, the image's identity. */
  name: string;
  version: string;
  createdAt: string;
  /** Raw image size in bytes and its SHA-256. */
  size: number;
  sha256: string;
  chunkSize: number;
  chunks: ChunkEntry[];
  /** Size of the .zst file. */
  compressedSize: number;
  /** SHA-256 over the chunk hashes: one value that pins every chunk (carried in the stream header). */
  rootHash: string;
}

export type SignedManifest = Signed<GoldenManifest>;

export const manifestPathOf = (image: string) => `${image}.manifest.json`;

export function imageIdOf(m: Pick<GoldenManifest, 'name' | 'version'>): string {
  return `${m.name}@${m.version}`;
}

export function rootHashOf(chunks: readonly Pick<ChunkEntry, 'sha256'>[]): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(`${c.sha256}\n`);
  return h.digest('hex');
}

/** Raw length of chunk `i` (the last one may be short). */
export function chunkLength(m: Pick<GoldenManifest, 'size' | 'chunkSize'>, i: number): number {
  return Math.min(m.chunkSize, m.size - i * m.chunkSize);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Reads up to `length` bytes at `position`, looping over short reads (block devices, pipes). */
export async function readFully(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

export interface MakeOptions {
  source: string;
  out: string;
  name: string;
  version: string;
  key: SigningKey;
  chunkSize?: number;
  now?: Date;
  onProgress?: (bytes: number) => void;
}

/**
 * Reads the golden medium (a device or an image file) to its end, writes the chunked .zst and the
 * signed manifest. Both are written under temporary names and renamed only when complete, so a
 * half-made image never looks released.
 */
export async function makeGoldenImage(opts: MakeOptions): Promise<GoldenManifest> {
  requireFolderFor(opts.out, 'the golden image');
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const tmp = path.join(path.dirname(opts.out), `.${path.basename(opts.out)}.${process.pid}.tmp`);
  const src = await openOr404(opts.source, 'r');
  const dst = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o644);
  const whole = createHash('sha256');
  const chunks: ChunkEntry[] = [];
  let size = 0;
  let zOffset = 0;
  try {
    for (;;) {
      const raw = await readFully(src, chunkSize, size);
      if (raw.length === 0) break;
      whole.update(raw);
      const frame = await zstdCompress(raw);
      await dst.write(frame, 0, frame.length, zOffset);
      chunks.push({ sha256: sha256(raw), zOffset, zLength: frame.length });
      zOffset += frame.length;
      size += raw.length;
      opts.onProgress?.(size);
      if (raw.length < chunkSize) break;
    }
    await dst.sync();
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  } finally {
    await src.close();
    await dst.close();
  }
  if (size === 0) {
    await unlink(tmp).catch(() => {});
    throw new RefusedError(`${opts.source} is empty: it holds no golden medium, nothing to package`);
  }
  const manifest: GoldenManifest = {
    format: GOLDEN_FORMAT,
    name: opts.name,
    version: opts.version,
    createdAt: (opts.now ?? new Date()).toISOString(),
    size,
    sha256: whole.digest('hex'),
    chunkSize,
    chunks,
    compressedSize: zOffset,
    rootHash: rootHashOf(chunks),
  };
  const signed = signDocument(manifest, opts.key);
  const mtmp = `${tmp}.manifest`;
  await writeFile(mtmp, `${JSON.stringify(signed, null, 1)}\n`, { mode: 0o644 });
  await rename(tmp, opts.out);
  await rename(mtmp, manifestPathOf(opts.out));
  return manifest;
}

async function openOr404(file: string, flags: string): Promise<FileHandle> {
  try {
    return await open(file, flags);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${file} does not exist`);
    throw err;
  }
}

/** Reads and checks the signed manifest of `image` (signature, then its own consistency). */
export async function loadManifest(image: string, trusted: readonly string[]): Promise<SignedManifest> {
  const file = manifestPathOf(image);
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new NotFoundError(`${file} does not exist (every golden image has a signed manifest beside it)`);
    throw new VerifyError(`${file}: not JSON`);
  }
  if (trusted.length === 0) {
    throw new ConfigError([
      { where: 'clone.trustedKeys', message: 'no vendor public key configured: nothing can be verified' },
    ]);
  }
  const m = verifyDocument<GoldenManifest>(doc, trusted, file);
  checkManifestShape(m, file);
  return doc as SignedManifest;
}

/** The signature proves who made it; this proves the numbers agree with each other. */
export function checkManifestShape(m: GoldenManifest, where: string): void {
  const expected = Math.ceil(m.size / m.chunkSize);
  const bad =
    m.format !== GOLDEN_FORMAT
      ? `format ${m.format}, expected ${GOLDEN_FORMAT}`
      : !(m.size > 0 && m.chunkSize > 0 && m.chunks.length === expected)
        ? `${m.chunks.length} chunks listed for ${m.size} bytes in chunks of ${m.chunkSize}`
        : rootHashOf(m.chunks) !== m.rootHash
          ? 'root hash does not match the chunk list'
          : null;
  if (bad) throw new VerifyError(`${where}: ${bad}`);
}

export interface VerifyReport {
  manifest: GoldenManifest;
  keyId: string;
  badChunks: number[];
}

/** `golden image verify`: the signature, the file size, every chunk's hash and the whole image's. */
export async function verifyGoldenImage(
  image: string,
  trusted: readonly string[],
  onProgress?: (rawBytes: number, ofBytes: number) => void,
): Promise<VerifyReport> {
  const signed = await loadManifest(image, trusted);
  const m = signed.payload;
  const st = await stat(image).catch(() => null);
  if (!st) throw new NotFoundError(`${image} does not exist`);
  if (st.size !== m.compressedSize) {
    throw new VerifyError(
      `${image}: ${st.size} bytes, the manifest says ${m.compressedSize} (truncated or replaced)`,
    );
  }
  const fh = await open(image, 'r');
  const whole = createHash('sha256');
  const badChunks: number[] = [];
  try {
    for (const [i, c] of m.chunks.entries()) {
      const raw = await decompressChunk(await readFully(fh, c.zLength, c.zOffset)).catch(() => null);
      if (!raw || raw.length !== chunkLength(m, i) || sha256(raw) !== c.sha256) badChunks.push(i);
      else whole.update(raw);
      onProgress?.(i * m.chunkSize + chunkLength(m, i), m.size);
    }
  } finally {
    await fh.close();
  }
  if (badChunks.length === 0 && whole.digest('hex') !== m.sha256) {
    throw new VerifyError(`${image}: the whole image's SHA-256 does not match the manifest`);
  }
  return { manifest: m, keyId: signed.keyId, badChunks };
}

export async function decompressChunk(frame: Buffer): Promise<Buffer> {
  return zstdDecompress(frame);
}

/** Reads chunk `i`'s frame from the image file and returns the raw chunk, checked. */
export async function readChunk(fh: FileHandle, m: GoldenManifest, i: number): Promise<Buffer> {
  const c = m.chunks[i]!;
  const raw = await decompressChunk(await readFully(fh, c.zLength, c.zOffset));
  if (raw.length !== chunkLength(m, i) || sha256(raw) !== c.sha256) {
    throw new VerifyError(`chunk ${i} of the image does not match its manifest hash`);
  }
  return raw;
}

export { sha256 as sha256Hex };
