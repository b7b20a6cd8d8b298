import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { historySchema, targetWhere } from '../../src/config/history.js';
import { InterruptedError, RemoteError, VerifyError } from '../../src/errors.js';
import { checkLocal, multipartEtag, PART_BYTES, s3Error } from '../../src/history/s3-client.js';
import { parseS3Spec } from '../../src/history/s3-target.js';

/**
 * The S3 target's pure parts: its settings (an untyped target is SFTP; http:// needs allowHttp),
 * `s3://` specs, the multipart ETag the HEAD after an upload must show, and how SDK failures read.
 * The store itself is tested against a real RGW (test/remote/history-s3.test.ts).
 */

const SECRET = 'v1:0123abcd:AAAA';
const s3 = (extra: Record<string, unknown> = {}) => ({
  name: 'obj',
  type: 's3',
  endpoint: 'https://s3.example.com',
  bucket: 'fleet',
  accessKeyId: 'AKIAEXAMPLE',
  secretAccessKey: SECRET,
  ...extra,
});

describe('history.targets of type s3', () => {
  it('a target without a type is SFTP; an s3 one gets its defaults', () => {
    const h = historySchema.parse({
      targets: [
        { name: 'a', server: 'h', user: 'u', privateKey: '/k', directory: '/d' },
        s3({ prefix: 'box1/' }),
      ],
    });
    expect(h.targets[0]!.type).toBe('sftp');
    expect(h.targets[1]).toMatchObject({
      type: 's3',
      region: 'us-east-1',
      allowHttp: false,
      appendOnly: false,
      multipartAboveMiB: 64,
    });
    expect(targetWhere(h.targets[1]!)).toBe('s3 https://s3.example.com/fleet/box1/');
    expect(targetWhere(h.targets[0]!)).toBe('u@h:/d');
  });

  it('an http:// endpoint needs allowHttp; the secret must be a ciphertext; bad names and prefixes are refused', () => {
    const bad = (t: Record<string, unknown>) => historySchema.safeParse({ targets: [t] }).success;
    expect(bad(s3({ endpoint: 'http://10.0.0.5:7480' }))).toBe(false);
    expect(bad(s3({ endpoint: 'http://10.0.0.5:7480', allowHttp: true }))).toBe(true);
    expect(bad(s3({ secretAccessKey: 'plain-secret' }))).toBe(false);
    expect(bad(s3({ bucket: 'No_Such' }))).toBe(false);
    expect(bad(s3({ prefix: 'box1' }))).toBe(false);
    expect(bad(s3({ prefix: '/box1/' }))).toBe(false);
    expect(bad(s3({ endpoint: 'https://user:pw@s3.example.com' }))).toBe(false);
    expect(bad(s3({ multipartAboveMiB: 4 }))).toBe(false);
  });

  it('s3://BUCKET/PREFIX specs', () => {
    expect(parseS3Spec('s3://fleet')).toEqual({ bucket: 'fleet', prefix: '' });
    expect(parseS3Spec('s3://fleet/site1/box7/')).toEqual({ bucket: 'fleet', prefix: 'site1/box7/' });
    expect(parseS3Spec('s3://fleet/box7')).toEqual({ bucket: 'fleet', prefix: 'box7/' });
    expect(parseS3Spec('backup@host:/dir')).toBeNull();
  });

  it("a multipart object's ETag is the MD5 of its parts' MD5s, then the part count", () => {
    const parts = [Buffer.alloc(PART_BYTES, 1), Buffer.from('rest')];
    const md5 = (b: Buffer) => createHash('md5').update(b).digest();
    const want = createHash('md5')
      .update(Buffer.concat(parts.map(md5)))
      .digest('hex');
    expect(multipartEtag(parts.map(md5))).toBe(`"${want}-2"`);
  });

  it('a local file whose content is not its name is never sent', () => {
    const name = `data/ab/${'a'.repeat(64)}`;
    expect(() => checkLocal({ name, size: 1 }, 'a'.repeat(64))).not.toThrow();
    expect(() => checkLocal({ name, size: 1 }, 'b'.repeat(64))).toThrow(VerifyError);
    expect(() => checkLocal({ name: 'config', size: 1 }, 'b'.repeat(64))).not.toThrow();
  });

  it('SDK failures read as one RemoteError in the words of the target', () => {
    const cfg = historySchema.parse({ targets: [s3()] }).targets[0]!;
    if (cfg.type !== 's3') throw new Error('not s3');
    const err = (name: string, status?: number, extra: Record<string, unknown> = {}) =>
      s3Error(
        Object.assign(new Error(`${name} from the store`), {
          name,
          ...(status ? { $metadata: { httpStatusCode: status } } : {}),
          ...extra,
        }),
        cfg,
        'obj (s3 https://s3.example.com/fleet/)',
        'list repo/',
      );
    const auth = err('SignatureDoesNotMatch', 403);
    expect(auth).toBeInstanceOf(RemoteError);
    expect(auth.message).toBe(
      'obj (s3 https://s3.example.com/fleet/): list repo/: authentication failed (the store refused the access key or its secret)',
    );
    expect(err('NoSuchBucket', 404).message).toMatch(/bucket fleet does not exist/);
    expect(err('AccessDenied', 403).message).toMatch(/access denied/);
    expect(err('TimeoutError').message).toMatch(/unreachable: no answer within the timeout/);
    expect(err('Error', undefined, { code: 'ECONNREFUSED' }).message).toMatch(/unreachable: cannot connect/);
    expect(err('AbortError')).toBeInstanceOf(InterruptedError);
    expect((err('InvalidAccessKeyId', 403) as RemoteError).hint).toMatch(/zshield history target list/);
  });
});
