import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { eachLimited } from '../../src/system/each-limited.js';
import { downloadFile } from '../../src/ssh/download.js';
import type { RemoteSession } from '../../src/ssh/session.js';
import { tempDir } from './helpers/context.js';

/**
 * A fetch from an SFTP target: several reads in flight at their own offsets, each written where
 * it belongs (a server that answers short reads too), the bytes past the listed size read to the
 * end, a file shorter than listed an error that leaves no file.
 */

function fakeSession(data: Buffer, maxRead = Number.POSITIVE_INFINITY) {
  let inFlight = 0;
  let most = 0;
  const s = {
    where: 'u@h',
    open: async () => Buffer.from('h'),
    closeHandle: async () => {},
    read: async (_h: Buffer, buf: Buffer, pos: number) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      const n = Math.max(0, Math.min(buf.length, maxRead, data.length - pos));
      data.copy(buf, 0, pos, pos + n);
      return n;
    },
  };
  return { session: s as unknown as RemoteSession, most: () => most };
}

const dirs: (() => void)[] = [];
afterEach(() => {
  for (const c of dirs.splice(0)) c();
});
function scratch(): string {
  const t = tempDir();
  dirs.push(t.cleanup);
  return t.dir;
}

describe('downloadFile', () => {
  const data = randomBytes(5 * 248 * 1024 + 1234);

  it('reads the listed size with several requests in flight, short answers included', async () => {
    const out = path.join(scratch(), 'f');
    const f = fakeSession(data, 100_000);
    await downloadFile(f.session, '/r/f', out, data.length);
    expect(readFileSync(out).equals(data)).toBe(true);
    expect(f.most()).toBeGreaterThan(1);
  });

  it('a file that grew past its listed size is read to its end; an unknown size too', async () => {
    const dir = scratch();
    await downloadFile(fakeSession(data).session, '/r/f', path.join(dir, 'a'), 1000);
    expect(readFileSync(path.join(dir, 'a')).equals(data)).toBe(true);
    await downloadFile(fakeSession(data).session, '/r/f', path.join(dir, 'b'));
    expect(readFileSync(path.join(dir, 'b')).equals(data)).toBe(true);
  });

  it('a file shorter than listed: an error, and no file', async () => {
    const out = path.join(scratch(), 'f');
    await expect(downloadFile(fakeSession(data).session, '/r/f', out, data.length + 10)).rejects.toThrow(
      /shorter than listed/,
    );
    expect(existsSync(out)).toBe(false);
  });
});

describe('eachLimited', () => {
  it('runs up to the limit at once; after a failure starts nothing more and throws it', async () => {
    let now = 0;
    let most = 0;
    const started: number[] = [];
    await expect(
      eachLimited([1, 2, 3, 4, 5, 6, 7, 8], 3, async (n) => {
        started.push(n);
        now++;
        most = Math.max(most, now);
        // 2 fails at once, while 1 and 3 are still in flight: nothing after them starts.
        if (n === 2) {
          now--;
          throw new Error('two');
        }
        await new Promise((r) => setTimeout(r, 2));
        now--;
      }),
    ).rejects.toThrow('two');
    expect(started).toEqual([1, 2, 3]);
    most = 0;
    await eachLimited([1, 2, 3, 4, 5, 6, 7, 8], 3, async () => {
      now++;
      most = Math.max(most, now);
      await new Promise((r) => setTimeout(r, 2));
      now--;
    });
    expect(most).toBe(3);
  });
});
