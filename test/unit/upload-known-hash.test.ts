import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryLogger } from '../../src/log/logger.js';
import type { RemoteSession } from '../../src/ssh/session.js';
import { RemoteMismatchError, uploadFile } from '../../src/ssh/transfer.js';
import { tempDir } from './helpers/context.js';

/**
 * An upload whose SHA-256 is known beforehand (a restic file, named by it): the server's checksum
 * is held against that, not against the local bytes, so a local file that is not what its name
 * says never takes its name there.
 */

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function fakeServer() {
  const files = new Map<string, Buffer>();
  const renamed: string[] = [];
  const s = {
    where: 'u@h',
    lost: false,
    size: async (f: string) => files.get(f)?.length ?? null,
    space: async () => null,
    open: async (f: string) => {
      files.set(f, files.get(f) ?? Buffer.alloc(0));
      return Buffer.from(f);
    },
    write: async (h: Buffer, buf: Buffer, pos: number) => {
      const f = h.toString();
      const cur = files.get(f)!;
      const next = Buffer.alloc(Math.max(cur.length, pos + buf.length));
      cur.copy(next);
      buf.copy(next, pos);
      files.set(f, next);
    },
    fsync: async () => {},
    closeHandle: async () => {},
    unlink: async (f: string) => {
      files.delete(f);
    },
    rename: async (a: string, b: string) => {
      files.set(b, files.get(a)!);
      files.delete(a);
      renamed.push(b);
    },
  };
  const remoteHash = async (_s: RemoteSession, f: string) => ({ sum: sha(files.get(f)!), by: 'fake' });
  return { session: s as unknown as RemoteSession, files, renamed, remoteHash };
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function localFile(data: Buffer): { name: string; size: number; path: string } {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const p = path.join(t.dir, 'f');
  writeFileSync(p, data);
  return { name: 'f', size: data.length, path: p };
}

describe('uploadFile with knownSha256', () => {
  const data = randomBytes(600 * 1024);

  it('the bytes its name says: verified by the server against the name, then named', async () => {
    const srv = fakeServer();
    const r = await uploadFile({
      session: srv.session,
      file: localFile(data),
      destination: '/d',
      log: memoryLogger(),
      limiter: null,
      remoteHash: srv.remoteHash,
      knownSha256: sha(data),
    });
    expect(r.sha256).toBe(sha(data));
    expect(srv.renamed).toEqual(['/d/f']);
    expect(srv.files.get('/d/f')!.equals(data)).toBe(true);
  });

  it('a local file that is not what its name says: refused, the part removed, never named', async () => {
    const srv = fakeServer();
    const other = Buffer.from(data);
    other[1000] = (other[1000]! + 1) % 256;
    await expect(
      uploadFile({
        session: srv.session,
        file: localFile(other),
        destination: '/d',
        log: memoryLogger(),
        limiter: null,
        remoteHash: srv.remoteHash,
        knownSha256: sha(data),
      }),
    ).rejects.toThrow(RemoteMismatchError);
    expect(srv.renamed).toEqual([]);
    expect([...srv.files.keys()]).toEqual([]);
  });
});
