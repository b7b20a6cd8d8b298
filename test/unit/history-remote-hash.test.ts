import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { remoteSha256, remoteSha256Many } from '../../src/ssh/remote-hash.js';
import type { RemoteSession } from '../../src/ssh/session.js';

/**
 * The server-side check of replicated files: one exec for a batch where the server has a shell,
 * else each file read back with several reads in flight (a server that answers short reads too).
 */

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function fakeSession(opts: {
  files: Record<string, Buffer>;
  exec?: (cmd: string) => { code: number; stdout: string; stderr: string } | 'refused';
  /** The most bytes one read returns (a server's own limit). */
  maxRead?: number;
}) {
  const execs: string[] = [];
  let inFlight = 0;
  let most = 0;
  const s = {
    lost: false,
    exec: async (cmd: string) => {
      execs.push(cmd);
      const r = opts.exec?.(cmd) ?? 'refused';
      if (r === 'refused') throw new Error('exec refused');
      return r;
    },
    open: async (file: string) => Buffer.from(file),
    closeHandle: async () => {},
    read: async (handle: Buffer, buf: Buffer, pos: number) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
      const data = opts.files[handle.toString()]!;
      const n = Math.max(0, Math.min(buf.length, opts.maxRead ?? buf.length, data.length - pos));
      data.copy(buf, 0, pos, pos + n);
      return n;
    },
  };
  return { session: s as unknown as RemoteSession, execs, most: () => most, raw: s };
}

const shellExec = (files: Record<string, Buffer>) => (cmd: string) => {
  if (!cmd.startsWith('openssl dgst -sha256 -r ')) return { code: 127, stdout: '', stderr: 'not found' };
  const names = [...cmd.matchAll(/'([^']*)'/g)].map((m) => m[1]!);
  const missing = names.filter((n) => !files[n]);
  return {
    code: missing.length ? 1 : 0,
    stdout: names
      .filter((n) => files[n])
      .map((n) => `${sha(files[n]!)} *${n}\n`)
      .join(''),
    stderr: missing.map((n) => `${n}: No such file or directory\n`).join(''),
  };
};

describe('remoteSha256Many', () => {
  const files = { '/r/a': randomBytes(1000), '/r/b': randomBytes(10), '/r/c d': randomBytes(5) };

  it('hashes a batch in one exec, in the order given', async () => {
    const f = fakeSession({ files, exec: shellExec(files) });
    const r = await remoteSha256Many(f.session, ['/r/b', '/r/c d', '/r/a']);
    expect(r).toEqual({
      sums: [sha(files['/r/b']), sha(files['/r/c d']), sha(files['/r/a'])],
      by: 'openssl',
    });
    expect(f.execs).toHaveLength(1);
  });

  it('a file missing from the batch: null (each is then checked on its own), not "no shell"', async () => {
    const f = fakeSession({ files, exec: shellExec(files) });
    expect(await remoteSha256Many(f.session, ['/r/a', '/r/gone'])).toBeNull();
  });

  it('an SFTP-only server (exec refused, or answered with nothing): no-shell; a lost link throws', async () => {
    expect(await remoteSha256Many(fakeSession({ files }).session, ['/r/a'])).toBe('no-shell');
    const silent = fakeSession({ files, exec: () => ({ code: 0, stdout: '', stderr: '' }) });
    expect(await remoteSha256Many(silent.session, ['/r/a'])).toBe('no-shell');
    const lost = fakeSession({ files });
    lost.raw.lost = true;
    await expect(remoteSha256Many(lost.session, ['/r/a'])).rejects.toThrow('exec refused');
  });
});

describe('remoteSha256 read-back', () => {
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const files = { '/r/big': big };

  it('reads back with several requests in flight, remembers the server has no shell', async () => {
    const f = fakeSession({ files });
    const known = { shell: null as boolean | null };
    expect(await remoteSha256(f.session, '/r/big', big.length, undefined, known)).toEqual({
      sum: sha(big),
      by: 'read-back',
    });
    expect(known.shell).toBe(false);
    expect(f.most()).toBeGreaterThan(1);
    const execs = f.execs.length;
    await remoteSha256(f.session, '/r/big', big.length, undefined, known);
    expect(f.execs.length).toBe(execs);
  });

  it('a server that answers short reads still gives the whole file, in order', async () => {
    const f = fakeSession({ files, maxRead: 100_000 });
    expect((await remoteSha256(f.session, '/r/big', big.length, undefined, { shell: false })).sum).toBe(
      sha(big),
    );
  });
});
