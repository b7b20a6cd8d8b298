// history replicate proves the repository password once for a password and the keys it opened
// (src/history/password-proof.ts): restic's key derivation is not run again at every replication.
import { mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { proofFile, provePassword } from '../../src/history/password-proof.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, type TestContext, tempDir, testContext } from './helpers/context.js';

describe('the repository password, proven once for the keys it opens', () => {
  let t: ReturnType<typeof tempDir>;
  let repo: string;
  let opens: number;
  let wrong: boolean;
  const open = async () => {
    opens++;
    if (wrong) throw new Error('restic: wrong password or no key found');
  };
  const ctxFor = (dryRun = false): TestContext =>
    testContext({ runner: new RecordingRunner(), dir: t.dir, clock: new FakeClock(new Date()), dryRun });
  const where = (password: string) => ({ dir: t.dir, repo, password });

  beforeEach(() => {
    t = tempDir();
    repo = path.join(t.dir, 'repo');
    mkdirSync(path.join(repo, 'keys'), { recursive: true });
    writeFileSync(path.join(repo, 'keys', 'a1'), 'key one');
    opens = 0;
    wrong = false;
  });
  afterEach(() => t.cleanup());

  it('opens the repository the first time, then not again while password and keys are the same', async () => {
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(1);
    expect(statSync(proofFile(t.dir)).mode & 0o777).toBe(0o600);
    expect(readFileSync(proofFile(t.dir), 'utf8')).not.toContain('pw-1');
    await provePassword(ctxFor(), where('pw-1'), open);
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(1);
  });

  it('another password is proven again, and a wrong one fails and is not remembered', async () => {
    await provePassword(ctxFor(), where('pw-1'), open);
    const proof = readFileSync(proofFile(t.dir), 'utf8');
    wrong = true;
    await expect(provePassword(ctxFor(), where('pw-2'), open)).rejects.toThrow(/wrong password/);
    expect(opens).toBe(2);
    expect(readFileSync(proofFile(t.dir), 'utf8')).toBe(proof);
    await expect(provePassword(ctxFor(), where('pw-2'), open)).rejects.toThrow(/wrong password/);
    expect(opens).toBe(3);
  });

  it('a key added, changed or removed is proven again', async () => {
    await provePassword(ctxFor(), where('pw-1'), open);
    writeFileSync(path.join(repo, 'keys', 'b2'), 'key two');
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(2);
    const old = new Date(Date.now() - 3600_000);
    utimesSync(path.join(repo, 'keys', 'a1'), old, old);
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(3);
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(3);
  });

  it('a dry run proves the password and writes nothing', async () => {
    await provePassword(ctxFor(true), where('pw-1'), open);
    expect(opens).toBe(1);
    expect(() => statSync(proofFile(t.dir))).toThrow(/ENOENT/);
  });

  it('a damaged proof file is proven again and rewritten', async () => {
    await provePassword(ctxFor(), where('pw-1'), open);
    writeFileSync(proofFile(t.dir), 'not a proof\n', { mode: 0o600 });
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(2);
    await provePassword(ctxFor(), where('pw-1'), open);
    expect(opens).toBe(2);
  });
});
