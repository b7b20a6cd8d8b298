import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { lstatSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fsyncDir, writePrivateFileAtomic } from './atomic-file.js';
import type { Writes } from './writes.js';
import { ConfigError, NotFoundError, RefusedError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/**
 * The remote password at rest. The seed kept a Fernet token in the ini file and the key beside it;
 * we keep the same split (ciphertext in the config, key in its own 0600 file) with AES-256-GCM, so
 * a ciphertext that was altered or paired with the wrong key fails to decrypt instead of yielding
 * garbage. Format: `v1:<key id>:<base64 of iv(12) | tag(16) | ciphertext>`. The key id (first 8 hex
 * digits of SHA-256 of the key) names the key that can open it, so "wrong key file" is a clear
 * error, and a key rotation interrupted between its two writes can be finished (see keygen.ts).
 */

export const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

function aad(id: string): Buffer {
  return Buffer.from(`zshield remote password v1 ${id}`);
}

export function newKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

export function encryptPassword(password: string, key: Buffer): string {
  const id = keyId(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad(id));
  const ct = Buffer.concat([cipher.update(password, 'utf8'), cipher.final()]);
  return `v1:${id}:${Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64')}`;
}

export interface Ciphertext {
  keyId: string;
  iv: Buffer;
  tag: Buffer;
  data: Buffer;
}

export function parseCiphertext(text: string): Ciphertext | null {
  const m = /^v1:([0-9a-f]{8}):([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (!m) return null;
  const raw = Buffer.from(m[2]!, 'base64');
  if (raw.length < IV_BYTES + TAG_BYTES) return null;
  return {
    keyId: m[1]!,
    iv: raw.subarray(0, IV_BYTES),
    tag: raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES),
    data: raw.subarray(IV_BYTES + TAG_BYTES),
  };
}

/** Why a ciphertext could not be opened; the message never contains the ciphertext or the key. */
export class DecryptError extends ConfigError {
  constructor(
    message: string,
    readonly reason: 'malformed' | 'other-key' | 'tampered',
    hint: string,
  ) {
    super([{ where: 'remote.password', message }], { hint });
  }
}

export function decryptPassword(text: string, key: Buffer, keyFile: string): string {
  const c = parseCiphertext(text);
  if (!c) {
    throw new DecryptError(
      'is not a password encrypted by zshield',
      'malformed',
      'set it with zshield config edit',
    );
  }
  const id = keyId(key);
  if (c.keyId !== id) {
    throw new DecryptError(
      `was encrypted with another key (key id ${c.keyId}; ${keyFile} has key id ${id})`,
      'other-key',
      'point remote.keyFile at the key it was encrypted with, or set the password again with zshield config edit',
    );
  }
  try {
    const d = createDecipheriv('aes-256-gcm', key, c.iv);
    d.setAAD(aad(c.keyId));
    d.setAuthTag(c.tag);
    return Buffer.concat([d.update(c.data), d.final()]).toString('utf8');
  } catch {
    throw new DecryptError(
      `does not decrypt with ${keyFile}: it was altered`,
      'tampered',
      'set the password again with zshield config edit',
    );
  }
}

/**
 * A file holding a secret (key file, private key, a config with a password) must be a regular file
 * that only its owner can read or write, as OpenSSH demands of private keys: a readable copy is a
 * leaked copy, and using it anyway would hide that.
 */
export function checkPrivateFile(file: string, what: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new NotFoundError(`${what} ${file} does not exist`, { hint: hintFor(what) });
    }
    throw new RefusedError(`${what} ${file} cannot be read (${code ?? String(err)})`);
  }
  if (!st.isFile()) throw new RefusedError(`${what} ${file} is not a regular file`);
  const mode = st.mode & 0o777;
  if (mode & 0o077) {
    throw new RefusedError(
      `${what} ${file} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}): refusing to use it`,
      { hint: `chmod 600 ${file}; if others could read it, treat the secret as leaked and replace it` },
    );
  }
}

function hintFor(what: string): string {
  // Only a stored password needs the key file, and keygen cannot re-encrypt what it cannot open:
  // the password has to be typed again.
  if (what === 'key file')
    return 'enter the password again: zshield keygen --ask-password (or zshield config edit)';
  if (what === 'private key')
    return 'set remote.privateKey to an existing key, or clear it with zshield config edit';
  return 'check the path in the config';
}

export function readKeyFile(file: string): Buffer {
  checkPrivateFile(file, 'key file');
  const text = readFileSync(file, 'utf8').trim();
  const key = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || key.length !== KEY_BYTES) {
    throw new RefusedError(`key file ${file} does not hold a ${KEY_BYTES}-byte base64 key`, {
      hint: 'make a new one and enter the password again: zshield keygen --ask-password',
    });
  }
  return key;
}

export function writeKeyFile(writes: Writes, file: string, key: Buffer): void {
  writePrivateFileAtomic(writes, file, `${key.toString('base64')}\n`);
}

/** Where keygen puts the new key while the config is being rewritten. */
export const pendingKeyFile = (keyFile: string) => `${keyFile}.new`;

/**
 * The clear password for remote.password, registered with the logger's redaction before it is
 * returned. A key id that matches `<keyFile>.new` instead of the key file means keygen stopped
 * after rewriting the config and before putting the new key in place: finish that rename.
 */
export function openPassword(opts: { ciphertext: string; keyFile: string; log: Logger }): string {
  const { ciphertext, keyFile, log } = opts;
  const c = parseCiphertext(ciphertext);
  let key = readKeyFileOrPending(keyFile, c?.keyId, log);
  if (key === null) key = readKeyFile(keyFile);
  const password = decryptPassword(ciphertext, key, keyFile);
  log.redact(password);
  return password;
}

function readKeyFileOrPending(keyFile: string, wanted: string | undefined, log: Logger): Buffer | null {
  const pending = pendingKeyFile(keyFile);
  let current: Buffer | null = null;
  try {
    current = readKeyFile(keyFile);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  if (wanted === undefined || (current && keyId(current) === wanted)) return current;
  let next: Buffer;
  try {
    next = readKeyFile(pending);
  } catch (err) {
    if (err instanceof NotFoundError) return current;
    throw err;
  }
  if (keyId(next) !== wanted) return current;
  log.warn(`an interrupted keygen left ${pending}; finishing it (it becomes ${keyFile})`);
  renameSync(pending, keyFile);
  fsyncDir(path.dirname(keyFile));
  return next;
}
