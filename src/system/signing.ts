import {
  type KeyObject,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
} from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, NotFoundError, RefusedError, VerifyError } from '../errors.js';
import { type Writes, requireFolderFor } from './writes.js';

/**
 * The one signing module of zshield: Ed25519 keys (node:crypto, no dependency), documents signed
 * over a canonical JSON form, and one verification against a list of trusted public keys. The
 * catalog of backup fingerprints (history/) and the golden image manifests and clone headers
 * (clone/) are both `Signed<T>` documents checked by `verifyDocument`.
 *
 * Public keys are written as `ed25519:<base64 of the 32 raw bytes>`: short enough for a config
 * file and a console, and unambiguous about the algorithm.
 */

const PREFIX = 'ed25519:';
/** The DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key is the 32 bytes after it. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** `ed25519:...`, as a config pins it. */
  publicText: string;
  keyId: string;
}

export interface Signed<T> {
  payload: T;
  /** Which key signed (keyIdOf its public key): lets a verifier name an unknown signer. */
  keyId: string;
  /** Base64 Ed25519 signature over canonicalJson(payload). */
  signature: string;
}

export function publicKeyText(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  return PREFIX + der.subarray(SPKI_PREFIX.length).toString('base64');
}

/** Parses `ed25519:<base64>`; `where` names the setting or file for the error. */
export function parsePublicKey(text: string, where = 'public key'): KeyObject {
  const raw = text.startsWith(PREFIX) ? Buffer.from(text.slice(PREFIX.length), 'base64') : null;
  if (raw?.length !== 32) {
    throw new ConfigError([
      { where, message: `not an Ed25519 public key (expected ${PREFIX}<base64 of 32 bytes>)` },
    ]);
  }
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** A short, stable name for a public key: the first 16 hex digits of SHA-256 of its raw bytes. */
export function keyIdOf(key: KeyObject | string): string {
  const text = typeof key === 'string' ? key : publicKeyText(key);
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted at every level: the bytes a signature covers. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function signBytes(data: Buffer | string, key: SigningKey): string {
  return sign(null, Buffer.from(data), key.privateKey).toString('base64');
}

export function verifyBytes(data: Buffer | string, signature: string, publicKey: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(data), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

export function signDocument<T>(payload: T, key: SigningKey): Signed<T> {
  return { payload, keyId: key.keyId, signature: signBytes(canonicalJson(payload), key) };
}

/**
 * The one verification: the document must be signed by one of `trusted` (public key texts).
 * Throws VerifyError naming what is wrong (malformed, signed by an unknown key, bad signature).
 */
export function verifyDocument<T>(doc: unknown, trusted: readonly string[], what = 'document'): T {
  if (!isSigned(doc)) throw new VerifyError(`${what}: not a signed document`);
  const key = trusted.find((t) => keyIdOf(t) === doc.keyId);
  if (!key) {
    throw new VerifyError(`${what}: signed by key ${doc.keyId}, which is not a trusted key`, {
      hint: 'check the public keys in the config (a document signed by anyone else is never accepted)',
    });
  }
  if (!verifyBytes(canonicalJson(doc.payload), doc.signature, parsePublicKey(key))) {
    throw new VerifyError(`${what}: the signature does not match its content (edited or damaged)`);
  }
  return doc.payload as T;
}

function isSigned(doc: unknown): doc is Signed<unknown> {
  if (doc === null || typeof doc !== 'object') return false;
  const d = doc as Record<string, unknown>;
  return typeof d.keyId === 'string' && typeof d.signature === 'string' && 'payload' in d;
}

export function generateSigningKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicText = publicKeyText(publicKey);
  return { privateKey, publicKey, publicText, keyId: keyIdOf(publicText) };
}

/**
 * A new key pair: the private key written 0600 (created exclusively, so an existing key is never
 * overwritten), the public text returned (and written beside it as `<file>.pub` when asked).
 */
export async function writeNewSigningKey(
  writes: Writes,
  file: string,
  opts: { writePublic?: boolean } = {},
): Promise<SigningKey> {
  requireFolderFor(file, 'the signing key');
  writes.allow(`write ${file}`);
  const key = generateSigningKey();
  const pem = key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fh = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await fh.writeFile(pem);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await stat(file);
    await unlink(tmp);
    throw new RefusedError(`${file} already exists: a signing key is never overwritten`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await rename(tmp, file);
  if (opts.writePublic) {
    const pub = await open(`${file}.pub`, 'w', 0o644);
    try {
      await pub.writeFile(`${key.publicText}\n`);
    } finally {
      await pub.close();
    }
  }
  return key;
}

/** `ed25519:...` as written beside a key, a PEM public key, or an OpenSSH public key line. */
function isPublicKeyText(text: string): boolean {
  const t = text.trim();
  return (
    /^ed25519:[A-Za-z0-9+/]+=*$/.test(t) ||
    t.startsWith('-----BEGIN PUBLIC KEY-----') ||
    /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+) [A-Za-z0-9+/]+=*( .*)?$/.test(t)
  );
}

/** Loads a private key; refuses one that others can read (a key is a secret like a password). */
export async function loadSigningKey(file: string): Promise<SigningKey> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new NotFoundError(`signing key ${file} does not exist`);
    throw err;
  }
  // A public key given where the private one belongs (the `.pub` written beside it) is said to be
  // one first: "chmod 600" and then "not a PEM private key" would send the operator the wrong way.
  if (st.isFile() && st.size < 4096 && isPublicKeyText(await readFile(file, 'utf8').catch(() => ''))) {
    throw new ConfigError([{ where: file, message: 'is a public key: signing needs the private key' }], {
      hint: file.endsWith('.pub')
        ? `give the private key beside it, ${file.slice(0, -'.pub'.length)} (mode 0600), not its .pub`
        : 'give the private key file (mode 0600) whose public key this is',
    });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new RefusedError(
      `signing key ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
      {
        hint: `chmod 600 ${file}`,
      },
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(await readFile(file));
  } catch {
    throw new ConfigError([{ where: file, message: 'not a PEM private key' }]);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new ConfigError([{ where: file, message: `an ${privateKey.asymmetricKeyType} key, not Ed25519` }]);
  }
  const publicKey = createPublicKey(privateKey);
  const publicText = publicKeyText(publicKey);
  return { privateKey, publicKey, publicText, keyId: keyIdOf(publicText) };
}
