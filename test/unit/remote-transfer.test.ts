import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import { quoteForShell } from '../../src/ssh/session.js';
import { HostKeyError, hostKeyInfo, parsePrivateKey } from '../../src/ssh/connect.js';
import { Progress, RateLimiter } from '../../src/ssh/progress.js';
import { tempDir } from './helpers/context.js';
import { formatBytes } from '../../src/config/size.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir('zshield-remote-transfer-'));
});
afterEach(() => cleanup());

describe('RateLimiter', () => {
  it('spreads bytes over time at the rate, after a quarter-second burst', async () => {
    let now = 0;
    const waits: number[] = [];
    const limiter = new RateLimiter(
      1000,
      () => now,
      async (ms) => {
        waits.push(ms);
        now += ms;
      },
    );
    // 250 bytes fit in the burst; each further 100 bytes waits 100 ms.
    await limiter.take(250);
    expect(waits).toEqual([]);
    for (let i = 0; i < 5; i++) await limiter.take(100);
    expect(waits.map((w) => Math.round(w))).toEqual([100, 100, 100, 100, 100]);
    expect(now).toBe(500);
  });

  it('an idle period does not bank more than the burst', async () => {
    let now = 0;
    let waited = 0;
    const limiter = new RateLimiter(
      1000,
      () => now,
      async (ms) => {
        waited += ms;
        now += ms;
      },
    );
    now = 60_000;
    await limiter.take(1250);
    expect(Math.round(waited)).toBe(1000);
  });
});

describe('Progress', () => {
  it('a line at the start, then at most one per 5 s, and the end once (the one progress component)', () => {
    const log = memoryLogger();
    let t = 0;
    const p = new Progress({ log }, 'f.img', 1000, 0, () => t, null);
    const at = (ms: number, done: number) => {
      t = ms;
      p.update(done);
    };
    at(1000, 50); // the first
    at(2500, 120); // within 5 s of it
    at(6000, 260); // 5 s later
    at(9000, 290); // within 5 s
    at(9500, 1000); // the end
    at(9600, 1000); // the end again: not repeated
    expect(log.lines.map((l) => /(\d+)%/.exec(l)?.[1])).toEqual(['5', '26', '100']);
    expect(log.lines[1]).toBe('info: remote copy: f.img 26% (260 B of 1000 B, 43 B/s)');
  });

  it('a resumed upload counts its rate from what was there', () => {
    const log = memoryLogger();
    let t = 0;
    const p = new Progress({ log }, 'f', 1000, 500, () => t, null);
    t = 3000;
    p.update(600);
    expect(log.lines[0]).toMatch(/60% .*, 33 B\/s\)/);
  });

  it('with --json (ctx.doc) the lines go to the log file only, never to the console', () => {
    const file: string[] = [];
    const console: string[] = [];
    const log = { info: (m: string) => console.push(m), toFile: (_l: string, m: string) => file.push(m) };
    let t = 0;
    const p = new Progress({ log, doc: {} }, 'f', 1000, 0, () => t, null);
    p.update(100);
    t = 6000;
    p.update(1000);
    expect(console).toEqual([]);
    expect(file).toEqual([
      'remote copy: f 10% (100 B of 1000 B, 97.7 KiB/s)',
      'remote copy: f 100% (1000 B of 1000 B, 167 B/s)',
    ]);
  });

  it('formats sizes', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(1024 ** 3)).toBe('1.0 GiB');
  });
});

describe('shell quoting for the one remote command', () => {
  it('single-quotes, so /bin/sh gives back exactly the string', () => {
    for (const s of ['/plain/path', "it's", 'a b$c`d`"e\\f', "'''", '-n', 'x\ty']) {
      const r = spawnSync('/bin/sh', ['-c', `printf '%s' ${quoteForShell(s)}`], { encoding: 'utf8' });
      expect(r.stdout).toBe(s);
    }
  });
});

describe('host keys', () => {
  it('the fingerprint is the one ssh-keygen -l prints, with the key type', () => {
    const key = path.join(dir, 'host');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const pub = readFileSync(`${key}.pub`, 'utf8').split(' ');
    const blob = Buffer.from(pub[1]!, 'base64');
    const expected = /(SHA256:\S+)/.exec(
      execFileSync('ssh-keygen', ['-l', '-f', `${key}.pub`], { encoding: 'utf8' }),
    )![1];
    expect(hostKeyInfo(blob)).toEqual({ fingerprint: expected, type: 'ssh-ed25519' });
  });

  it('an unknown key and a changed key say what to do', () => {
    const e = { host: '192.0.2.7', port: 22 };
    const offered = { fingerprint: 'SHA256:new', type: 'ssh-ed25519' };
    const unknown = new HostKeyError(e, offered, null);
    expect(unknown).toBeInstanceOf(RefusedError);
    expect(unknown.message).toBe(
      'remote host 192.0.2.7:22 is not trusted: it offers ssh-ed25519 key SHA256:new, and remote.hostKey is not set',
    );
    expect(unknown.hint).toMatch(/zshield remote trust --fingerprint SHA256:new$/);
    const changed = new HostKeyError({ host: 'fe80::1', port: 2222 }, offered, 'SHA256:old');
    expect(changed.message).toMatch(
      /^remote host key for \[fe80::1\]:2222 has CHANGED: .*SHA256:new.*SHA256:old/,
    );
  });

  it('a private key with a passphrase, or not a key at all, is refused clearly (without its content)', async () => {
    const key = path.join(dir, 'id');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'passphrase', '-f', key]);
    await expect(parsePrivateKey(readFileSync(key), key)).rejects.toThrow(/protected by a passphrase/);
    await expect(parsePrivateKey(Buffer.from('not a key'), '/k')).rejects.toThrow(/is not a private key/);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${key}2`]);
    expect((await parsePrivateKey(readFileSync(`${key}2`), key)).length).toBeGreaterThan(0);
  });
});
