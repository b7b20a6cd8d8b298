import { type FileHandle, open } from 'node:fs/promises';

/**
 * The handoff disk between `golden update` and the guest: a raw 2 MiB disk, no file system (the
 * guest needs no mount and no tool to read it). The request is JSON at offset 0, the result JSON at
 * 1 MiB, each padded with NULs. Both sides are zshield, so the format is private to it.
 */

export const HANDOFF_SIZE = 2 * 1024 * 1024;
const AREA = 1024 * 1024;
const RESULT_AT = AREA;
/** Of the command's output, only the end is kept (what explains a failure). */
export const OUTPUT_TAIL = 128 * 1024;

export type HandoffRequest =
  | { mode: 'update'; argv: string[]; script?: string; timeoutSeconds: number }
  | { mode: 'proof'; nonce: string };

export interface HandoffResult {
  exitCode: number;
  output: string;
}

export function encodeArea(doc: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(doc), 'utf8');
  if (json.length >= AREA)
    throw new RangeError(`handoff document of ${json.length} bytes: at most ${AREA - 1}`);
  const buf = Buffer.alloc(AREA);
  json.copy(buf);
  return buf;
}

export function decodeArea<T>(buf: Buffer): T | null {
  const end = buf.indexOf(0);
  const text = buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

async function withFile<T>(file: string, flags: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
  const fh = await open(file, flags, 0o600);
  try {
    return await fn(fh);
  } finally {
    await fh.close();
  }
}

/** Host side: a new handoff disk holding `req`, with an empty result area. */
export async function writeHandoffDisk(file: string, req: HandoffRequest): Promise<void> {
  await withFile(file, 'w', async (fh) => {
    await fh.write(encodeArea(req), 0, AREA, 0);
    await fh.truncate(HANDOFF_SIZE);
  });
}

export async function readRequest(file: string): Promise<HandoffRequest | null> {
  return withFile(file, 'r', async (fh) => {
    const buf = Buffer.alloc(AREA);
    await fh.read(buf, 0, AREA, 0);
    return decodeArea<HandoffRequest>(buf);
  });
}

/** Guest side: the result, synced to the disk before the guest powers off. */
export async function writeResult(file: string, res: HandoffResult): Promise<void> {
  const output = res.output.length > OUTPUT_TAIL ? res.output.slice(-OUTPUT_TAIL) : res.output;
  await withFile(file, 'r+', async (fh) => {
    await fh.write(encodeArea({ ...res, output }), 0, AREA, RESULT_AT);
    await fh.sync();
  });
}

export async function readResult(file: string): Promise<HandoffResult | null> {
  return withFile(file, 'r', async (fh) => {
    const buf = Buffer.alloc(AREA);
    await fh.read(buf, 0, AREA, RESULT_AT);
    return decodeArea<HandoffResult>(buf);
  });
}
