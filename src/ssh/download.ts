import { open, rename } from 'node:fs/promises';
import { RemoteError } from '../errors.js';
import { eachLimited } from '../system/each-limited.js';
import { type RemoteSession, WRITE_BYTES } from './session.js';

/** Read requests in flight per file: as for the writes, acknowledgements overlap the bytes. */
const READ_IN_FLIGHT = 16;

/**
 * Read a remote file into a local one, written whole and then named (a cut fetch leaves no file).
 * With the size known (a listing's), READ_IN_FLIGHT reads at their own offsets are in flight at
 * once, each written where it belongs; a file shorter than that size is an error. Whatever follows
 * the known size (the file grew) and a file of unknown size are read to their end, one request at
 * a time.
 */
export async function downloadFile(
  s: RemoteSession,
  remote: string,
  localPath: string,
  size = 0,
): Promise<void> {
  const tmp = `${localPath}.part`;
  const out = await open(tmp, 'w', 0o600);
  const handle = await s.open(remote, 'r');
  try {
    const chunk = async (at: number, len: number) => {
      const buf = Buffer.allocUnsafe(len);
      for (let got = 0; got < len; ) {
        const n = await s.read(handle, buf.subarray(got), at + got, remote);
        if (n <= 0)
          throw new RemoteError(`remote ${s.where}: ${remote} is shorter than listed (${size} bytes)`);
        await out.write(buf, got, n, at + got);
        got += n;
      }
    };
    const offsets: number[] = [];
    for (let at = 0; at < size; at += WRITE_BYTES) offsets.push(at);
    // Every read in flight ends before the handles close; the first failure is the one thrown.
    await eachLimited(offsets, READ_IN_FLIGHT, (at) => chunk(at, Math.min(WRITE_BYTES, size - at)));
    const buf = Buffer.allocUnsafe(WRITE_BYTES);
    for (let pos = size; ; ) {
      const n = await s.read(handle, buf, pos, remote);
      if (n <= 0) break;
      await out.write(buf, 0, n, pos);
      pos += n;
    }
    await out.sync();
  } finally {
    await s.closeHandle(handle, remote).catch(() => {});
    await out.close();
  }
  await rename(tmp, localPath);
}
