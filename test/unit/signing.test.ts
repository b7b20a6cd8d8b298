import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import {
  canonicalJson,
  generateSigningKey,
  keyIdOf,
  loadSigningKey,
  parsePublicKey,
  signDocument,
  verifyDocument,
  writeNewSigningKey,
} from '../../src/system/signing.js';
import { REAL_WRITES } from '../../src/system/writes.js';

describe('signing', () => {
  it('canonical JSON sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}',
    );
  });

  it('a document verifies with its key, whatever the key order of the payload', () => {
    const key = generateSigningKey();
    const doc = signDocument({ id: 'abc', size: 3 }, key);
    const reordered = JSON.parse(JSON.stringify({ ...doc, payload: { size: 3, id: 'abc' } }));
    expect(verifyDocument(reordered, [key.publicText])).toEqual({ id: 'abc', size: 3 });
  });

  it('an edited payload, another signer and a malformed document are each refused', () => {
    const key = generateSigningKey();
    const other = generateSigningKey();
    const doc = signDocument({ id: 'abc' }, key);
    expect(() => verifyDocument({ ...doc, payload: { id: 'abd' } }, [key.publicText])).toThrow(
      /does not match/,
    );
    expect(() => verifyDocument(doc, [other.publicText])).toThrow(/not a trusted key/);
    const forged = { ...signDocument({ id: 'abc' }, other), keyId: key.keyId };
    expect(() => verifyDocument(forged, [key.publicText])).toThrow(/does not match/);
    expect(() => verifyDocument({ payload: 1 }, [key.publicText])).toThrow(/not a signed document/);
  });

  it('public key text round-trips and bad text is a config error', () => {
    const key = generateSigningKey();
    expect(keyIdOf(parsePublicKey(key.publicText))).toBe(key.keyId);
    expect(() => parsePublicKey('ed25519:AAAA', 'catalog.publicKey')).toThrow(/catalog.publicKey/);
  });

  it('a key file is written 0600, never overwritten, and refused when others can read it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zs-sign-'));
    const file = path.join(dir, 'key');
    const key = await writeNewSigningKey(REAL_WRITES, file, { writePublic: true });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(`${file}.pub`, 'utf8')).trim()).toBe(key.publicText);
    expect((await loadSigningKey(file)).publicText).toBe(key.publicText);
    await expect(writeNewSigningKey(REAL_WRITES, file)).rejects.toThrow(/never overwritten/);
    expect((await loadSigningKey(file)).publicText).toBe(key.publicText);
    await chmod(file, 0o644);
    await expect(loadSigningKey(file)).rejects.toThrow(/readable by others/);
    await writeFile(path.join(dir, 'junk'), 'x', { mode: 0o600 });
    await expect(loadSigningKey(path.join(dir, 'junk'))).rejects.toThrow(/not a PEM/);
  });

  it('a public key given as the signing key is told so, and its hint (the private key beside it) works', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zs-sign-'));
    const file = path.join(dir, 'vendor.key');
    const key = await writeNewSigningKey(REAL_WRITES, file, { writePublic: true });
    // The .pub is written 0644: it is not "chmod 600" first, then "not a PEM private key".
    let err: unknown;
    await loadSigningKey(`${file}.pub`).catch((e: unknown) => {
      err = e;
    });
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      `config: ${file}.pub: is a public key: signing needs the private key`,
    );
    const hint = (err as ConfigError).hint!;
    expect(hint).toBe(`give the private key beside it, ${file} (mode 0600), not its .pub`);
    const named = /beside it, (\S+) \(/.exec(hint)![1]!;
    expect((await loadSigningKey(named)).publicText).toBe(key.publicText);
    // A PEM public key, and an OpenSSH public key line, under any name: the same.
    const pem = key.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await writeFile(path.join(dir, 'pem'), pem, { mode: 0o600 });
    await expect(loadSigningKey(path.join(dir, 'pem'))).rejects.toThrow(/is a public key/);
    await writeFile(path.join(dir, 'ssh'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx user@host\n', {
      mode: 0o644,
    });
    await expect(loadSigningKey(path.join(dir, 'ssh'))).rejects.toThrow(/is a public key/);
  });
});
