import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { type GoldenManifest, chunkLength, readFully, sha256Hex } from './golden-image.js';
import type { Writes } from '../system/writes.js';

/**
 * The partition table and boot code live in the first MiB. It is wiped first and written last,
 * after every chunk verified: until then the disk does not look like a bootable golden medium
 * (neither the half-written new one nor the old one it held).
 */
export const HEAD_BYTES = 1024 * 1024;

export interface WriterOptions {
  /** Drops the kernel's cached copy before a read-back (blockdev --flushbufs for a device). */
  flush?: () => Promise<void>;
}

const zeroHashes = new Map<number, string>();
let zeros = Buffer.alloc(0);

/**
 * Does `buf` hash to `expected`? A chunk whose expected content is all zeros (most of a golden
 * medium: the free space of its partition) is compared with zeros instead of hashed, with the same
 * answer: on a slow box (an old CPU, or one under emulation) SHA-256 of GiBs of zeros is most of
 * the check's time, a comparison a small part of it.
 */
export function matchesHash(buf: Buffer, expected: string): boolean {
  let zeroHash = zeroHashes.get(buf.length);
  if (zeroHash === undefined) {
    if (zeros.length < buf.length) zeros = Buffer.alloc(buf.length);
    zeroHash = sha256Hex(zeros.subarray(0, buf.length));
    zeroHashes.set(buf.length, zeroHash);
  }
  if (expected === zeroHash) return buf.equals(zeros.subarray(0, buf.length));
  return sha256Hex(buf) === expected;
}

/** Writes an image onto a target (device or file), holds the head back, verifies by reading back. */
export class TargetWriter {
  private readonly head: Buffer;
  private headCommitted = false;

  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    readonly size: number,
    private readonly opts: WriterOptions,
  ) {
    this.head = Buffer.alloc(Math.min(HEAD_BYTES, size));
  }

  /** Opens for writing without truncating (a device cannot be, a file keeps what is beyond the image). */
  static async open(
    writes: Writes,
    file: string,
    size: number,
    opts: WriterOptions = {},
  ): Promise<TargetWriter> {
    writes.allow(`write ${file}`);
    const fh = await open(file, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600);
    return new TargetWriter(fh, file, size, opts);
  }

  async wipeHead(): Promise<void> {
    await this.fh.write(Buffer.alloc(this.head.length), 0, this.head.length, 0);
    await this.fh.sync();
  }

  /** Data below HEAD_BYTES goes to the held-back head; the rest to the target. */
  async write(offset: number, data: Buffer): Promise<void> {
    let buf = data;
    let at = offset;
    if (at < this.head.length) {
      const n = Math.min(buf.length, this.head.length - at);
      buf.copy(this.head, at, 0, n);
      buf = buf.subarray(n);
      at += n;
      if (this.headCommitted) await this.fh.write(this.head, at - n, n, at - n);
    }
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, at + done);
      done += bytesWritten;
    }
  }

  async sync(): Promise<void> {
    await this.fh.sync();
    await this.opts.flush?.();
  }

  /** Chunk `i` as it is now: read back from the target, the held-back head from memory. */
  async readBack(m: GoldenManifest, i: number): Promise<Buffer> {
    const start = i * m.chunkSize;
    const buf = await readFully(this.fh, chunkLength(m, i), start);
    if (!this.headCommitted && start < this.head.length && buf.length > 0) {
      this.head.copy(buf, 0, start, Math.min(this.head.length, start + buf.length));
    }
    return buf;
  }

  /** The chunks (of `which`, default all) whose content does not match the manifest. */
  async verify(
    m: GoldenManifest,
    which?: readonly number[],
    onChunk?: (i: number) => void,
  ): Promise<number[]> {
    await this.sync();
    const bad: number[] = [];
    for (const i of which ?? m.chunks.map((_, k) => k)) {
      const buf = await this.readBack(m, i);
      if (buf.length !== chunkLength(m, i) || !matchesHash(buf, m.chunks[i]!.sha256)) bad.push(i);
      onChunk?.(i);
    }
    return bad;
  }

  /** Writes the head: the last write of a clone, made only after everything else verified. */
  async commitHead(): Promise<void> {
    await this.fh.write(this.head, 0, this.head.length, 0);
    this.headCommitted = true;
    await this.sync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
