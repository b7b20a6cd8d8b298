import { RemoteError, VerifyError } from '../errors.js';
import { type GoldenManifest, chunkLength, decompressChunk, sha256Hex } from '../golden/index.js';
import type { ReceiverReport } from './repair-server.js';
import type { TargetWriter } from '../golden/index.js';

const TIMEOUT_MS = 120_000;

/**
 * Fetches the given chunks from the sender's repair server (one range request per chunk's zstd
 * frame), checks each against the signed manifest's hash and writes it. Returns the bytes fetched.
 */
export async function fetchChunks(
  url: string,
  m: GoldenManifest,
  chunks: readonly number[],
  writer: TargetWriter,
  signal: AbortSignal,
): Promise<number> {
  let bytes = 0;
  for (const i of chunks) {
    const c = m.chunks[i]!;
    const frame = await get(`${url}/image`, `bytes=${c.zOffset}-${c.zOffset + c.zLength - 1}`, signal);
    bytes += frame.length;
    if (frame.length !== c.zLength)
      throw new RemoteError(`repair server sent ${frame.length} bytes for chunk ${i}`);
    const raw = await decompressChunk(frame).catch(() => Buffer.alloc(0));
    if (raw.length !== chunkLength(m, i) || sha256Hex(raw) !== c.sha256) {
      throw new VerifyError(`chunk ${i} fetched from ${url} does not match the manifest`);
    }
    await writer.write(i * m.chunkSize, raw);
  }
  return bytes;
}

async function get(url: string, range: string, signal: AbortSignal): Promise<Buffer> {
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { Range: range },
      signal: AbortSignal.any([signal, AbortSignal.timeout(TIMEOUT_MS)]),
    });
  } catch (err) {
    throw new RemoteError(`repair server ${url} unreachable: ${(err as Error).message}`);
  }
  if (res.status !== 206) throw new RemoteError(`repair server ${url} answered ${res.status} to ${range}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Best effort: the box's own result stands whether or not the sender hears of it. */
export async function postReport(url: string, report: ReceiverReport): Promise<boolean> {
  try {
    const res = await fetch(`${url}/report`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(report),
      signal: AbortSignal.timeout(30_000),
    });
    return res.status === 204;
  } catch {
    return false;
  }
}
