import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, NotFoundError, RefusedError } from '../../src/errors.js';
import { memoryLogger } from '../../src/log/logger.js';
import {
  checkPrivateFile,
  DecryptError,
  decryptPassword,
  encryptPassword,
  keyId,
  newKey,
  openPassword,
  parseCiphertext,
  pendingKeyFile,
  readKeyFile,
  writeKeyFile,
} from '../../src/system/secrets.js';
import { writePrivateFileAtomic } from '../../src/system/atomic-file.js';
import { tempDir } from './helpers/context.js';
import { REAL_WRITES } from '../../src/system/writes.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir('zshield-remote-secrets-'));
});
afterEach(() => cleanup());

describe('password encryption (AES-256-GCM)', () => {
  it('round-trips, with a fresh IV each time and the key id in the clear', () => {
    const key = newKey();
    const a = encryptPassword('pä$$ \'word"', key);
    const b = encryptPassword('pä$$ \'word"', key);
    expect(a).not.toBe(b);
    expect(a).toMatch(new RegExp(`^v1:${keyId(key)}:[A-Za-z0-9+/]+=*$`));
    expect(decryptPassword(a, key, '/k')).toBe('pä$$ \'word"');
  });

  it('a ciphertext altered anywhere does not decrypt (authenticated)', () => {
    const key = newKey();
    const c = encryptPassword('secret', key);
    const raw = Buffer.from(c.split(':')[2]!, 'base64');
    for (const i of [0, 13, raw.length - 1]) {
      const bad = Buffer.from(raw);
      bad[i]! ^= 1;
      expect(() => decryptPassword(`v1:${keyId(key)}:${bad.toString('base64')}`, key, '/k')).toThrow(
        /was altered/,
      );
    }
  });

  it('the wrong key is named by key id, and the message holds neither key nor ciphertext', () => {
    const key = newKey();
    const other = newKey();
    const c = encryptPassword('secret', key);
    let err: unknown;
    try {
      decryptPassword(c, other, '/etc/zshield/remote.key');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DecryptError);
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toContain(`key id ${keyId(key)}`);
    expect(msg).toContain(`has key id ${keyId(other)}`);
    expect(msg).not.toContain(c.split(':')[2]!.slice(0, 20));
    expect(msg).not.toContain('secret');
  });

  it('rejects what is not ours', () => {
    expect(parseCiphertext('gAAAAABg7xoT7PVgqYI5c69wQy')).toBeNull();
    expect(parseCiphertext('v1:0000000:AAAA')).toBeNull();
    expect(parseCiphertext('v1:00000000:AAAA')).toBeNull();
    expect(() => decryptPassword('plain', newKey(), '/k')).toThrow(/not a password encrypted by zshield/);
  });
});

describe('files holding secrets', () => {
  it('owner-only files pass; group or world access is refused with the mode and a chmod hint', () => {
    const f = path.join(dir, 'k');
    writeFileSync(f, 'x', { mode: 0o600 });
    expect(() => checkPrivateFile(f, 'key file')).not.toThrow();
    chmodSync(f, 0o400);
    expect(() => checkPrivateFile(f, 'key file')).not.toThrow();
    for (const mode of [0o640, 0o604, 0o620, 0o644]) {
      chmodSync(f, mode);
      let err: unknown;
      try {
        checkPrivateFile(f, 'key file');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as Error).message).toContain(`(mode 0${mode.toString(8)})`);
      expect((err as RefusedError).hint).toContain(`chmod 600 ${f}`);
    }
  });

  it('a missing file is NotFound with a hint; a directory or a symlink is refused', () => {
    expect(() => checkPrivateFile(path.join(dir, 'none'), 'key file')).toThrow(NotFoundError);
    mkdirSync(path.join(dir, 'd'), { mode: 0o700 });
    expect(() => checkPrivateFile(path.join(dir, 'd'), 'key file')).toThrow(/not a regular file/);
    writeFileSync(path.join(dir, 'real'), 'x', { mode: 0o600 });
    symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
    expect(() => checkPrivateFile(path.join(dir, 'link'), 'key file')).toThrow(/not a regular file/);
  });

  it('writes 0600 whatever the umask, atomically (no temp file left), and reads back the key', () => {
    const old = process.umask(0);
    try {
      const f = path.join(dir, 'sub', 'remote.key');
      const key = newKey();
      writeKeyFile(REAL_WRITES, f, key);
      expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(readKeyFile(f).equals(key)).toBe(true);
      writePrivateFileAtomic(REAL_WRITES, f, 'replaced\n');
      expect(readFileSync(f, 'utf8')).toBe('replaced\n');
      expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(readdirSync(path.dirname(f))).toEqual(['remote.key']);
    } finally {
      process.umask(old);
    }
  });

  it('a key file that is not 32 base64 bytes is refused', () => {
    const f = path.join(dir, 'k');
    writeFileSync(f, 'c2hvcnQ=\n', { mode: 0o600 });
    expect(() => readKeyFile(f)).toThrow(/does not hold a 32-byte base64 key/);
  });
});

describe('openPassword', () => {
  it('decrypts and registers the password for redaction', () => {
    const keyFile = path.join(dir, 'remote.key');
    const key = newKey();
    writeKeyFile(REAL_WRITES, keyFile, key);
    const log = memoryLogger();
    const pw = openPassword({ ciphertext: encryptPassword('hunter2 pw', key), keyFile, log });
    expect(pw).toBe('hunter2 pw');
    log.info('connecting with hunter2 pw');
    expect(log.lines).toEqual(['info: connecting with ***']);
  });

  it('finishes a keygen that stopped after rewriting the config: the .new key is moved into place', () => {
    const keyFile = path.join(dir, 'remote.key');
    const oldKey = newKey();
    const next = newKey();
    writeKeyFile(REAL_WRITES, keyFile, oldKey);
    writeKeyFile(REAL_WRITES, pendingKeyFile(keyFile), next);
    const log = memoryLogger();
    expect(openPassword({ ciphertext: encryptPassword('pw', next), keyFile, log })).toBe('pw');
    expect(readKeyFile(keyFile).equals(next)).toBe(true);
    expect(existsSync(pendingKeyFile(keyFile))).toBe(false);
    expect(log.lines.join('\n')).toMatch(/interrupted keygen/);
  });

  it('a keygen stopped before rewriting the config: the old key still opens it, the .new is left alone', () => {
    const keyFile = path.join(dir, 'remote.key');
    const oldKey = newKey();
    writeKeyFile(REAL_WRITES, keyFile, oldKey);
    writeKeyFile(REAL_WRITES, pendingKeyFile(keyFile), newKey());
    const pw = openPassword({ ciphertext: encryptPassword('pw', oldKey), keyFile, log: memoryLogger() });
    expect(pw).toBe('pw');
    expect(readKeyFile(keyFile).equals(oldKey)).toBe(true);
  });

  it('a missing key file is NotFound', () => {
    expect(() =>
      openPassword({
        ciphertext: encryptPassword('pw', newKey()),
        keyFile: path.join(dir, 'none'),
        log: memoryLogger(),
      }),
    ).toThrow(NotFoundError);
  });
});
