import { createHash } from 'node:crypto';
import { open, rename } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import type { S3TargetConfig } from '../config/history.js';
import { InterruptedError, RemoteError, VerifyError } from '../errors.js';
import { expectedHash, type RepoFile } from './repo-store.js';

/**
 * The AWS SDK for one S3 target: loaded on first use (a dynamic import, so a command that never
 * talks to an object store does not pay for loading it), set up for what Ceph's RADOS Gateway 16
 * takes, and its failures told as one RemoteError (exit 11, as an SFTP target's) in the target's
 * words.
 */

/** Parts of a multipart upload (the S3 minimum is 5 MiB, but for the last). */
export const PART_BYTES = 8 * 1024 * 1024;

/**
 * An object belongs to the user who wrote it (RGW, and S3 without BucketOwnerEnforced): the
 * bucket's owner (the vendor: its prune credential, a fleet view) could delete it but not read it.
 */
export const OWNER_ACL = 'bucket-owner-full-control';

export const md5 = (b: Buffer) => createHash('md5').update(b).digest();

/** The ETag S3 gives a multipart object: the MD5 of the parts' binary MD5s, then `-N`. */
export function multipartEtag(partMd5s: readonly Buffer[]): string {
  return `"${md5(Buffer.concat(partMd5s)).toString('hex')}-${partMd5s.length}"`;
}

/** What is sent must be what its name says (restic's files are named by their SHA-256). */
export function checkLocal(file: RepoFile, sha256: string): void {
  const want = expectedHash(file.name);
  if (want !== null && want !== sha256)
    throw new VerifyError(`${file.name}: the local copy is damaged (its SHA-256 is ${sha256}); not sent`, {
      hint: 'zshield history verify checks the targets; restic check the local repository',
    });
}

export type Sdk = typeof import('@aws-sdk/client-s3');

let sdk: Promise<Sdk> | null = null;
export const loadSdk = (): Promise<Sdk> => {
  sdk ??= import('@aws-sdk/client-s3');
  return sdk;
};

export interface ClientOptions {
  secretAccessKey: string;
  /** Both the connect timeout and the longest silence of a request: RGW hangs (never fails) while its OSD is down. */
  timeoutMs: number;
  retries: number;
}

export async function makeClient(cfg: S3TargetConfig, opts: ClientOptions): Promise<S3Client> {
  const { S3Client } = await loadSdk();
  return new S3Client({
    endpoint: cfg.endpoint,
    region: cfg.region,
    credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: opts.secretAccessKey },
    // RGW answers virtual-host requests only with a DNS name per bucket; paths always work.
    forcePathStyle: true,
    // The SDK's default (WHEN_SUPPORTED) sends a stream as aws-chunked with a trailing CRC32, which
    // RGW 16 refuses (411 MissingContentLength); integrity in transit is Content-MD5 instead.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: opts.retries + 1,
    // An idle socket (no byte either way for timeoutMs) fails the request: a part of 8 MiB over a
    // slow link may take longer than that, and is no hang. (requestTimeout bounds a whole request
    // and, unless told to throw, only logs a warning on the console.)
    requestHandler: { connectionTimeout: opts.timeoutMs, socketTimeout: opts.timeoutMs },
  });
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

export const statusOf = (err: unknown): number | undefined => (err as SdkError)?.$metadata?.httpStatusCode;
export const isNotFound = (err: unknown): boolean =>
  statusOf(err) === 404 || ['NotFound', 'NoSuchKey'].includes((err as SdkError)?.name ?? '');
export const isPreconditionFailed = (err: unknown): boolean =>
  statusOf(err) === 412 || (err as SdkError)?.name === 'PreconditionFailed';

/**
 * One error for any failure of a request: what was being done, why, and what to check. The
 * secret never appears in an SDK message (it signs; it is not sent).
 */
export function s3Error(err: unknown, cfg: S3TargetConfig, label: string, what: string): Error {
  if (err instanceof RemoteError || err instanceof InterruptedError) return err;
  const e = (err ?? {}) as SdkError;
  const name = e.name ?? '';
  const code = e.code ?? (err as { cause?: { code?: string } })?.cause?.code ?? '';
  const status = statusOf(err);
  const t = cfg.name;
  let reason: string;
  let hint: string;
  if (name === 'AbortError') return new InterruptedError(`${label}: ${what}: interrupted`);
  if (['InvalidAccessKeyId', 'SignatureDoesNotMatch'].includes(name) || (status === 403 && !name)) {
    reason = 'authentication failed (the store refused the access key or its secret)';
    hint = `check the accessKeyId and secret of history target ${t}: zshield history target list shows them`;
  } else if (name === 'AccessDenied' || status === 403) {
    reason = `access denied (${name || 'HTTP 403'})`;
    hint = `the user of key ${cfg.accessKeyId} must be able to list, read and write ${cfg.bucket}/${cfg.prefix}`;
  } else if (name === 'NoSuchBucket') {
    reason = `bucket ${cfg.bucket} does not exist`;
    hint = `the store's owner makes the bucket; check history target ${t}'s bucket: zshield history target list`;
  } else if (
    name === 'TimeoutError' ||
    /ETIMEDOUT|ECONNRESET|EPIPE|socket hang up/.test(`${code} ${e.message}`)
  ) {
    reason = `unreachable: no answer within the timeout (${e.message ?? name})`;
    hint = `check that the store at ${cfg.endpoint} is up (an object store whose disks are down does not answer); the next run resumes`;
  } else if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(`${code} ${e.message}`)) {
    reason = `unreachable: cannot connect (${code || e.message})`;
    hint = `check the endpoint of history target ${t} and that the store is up: zshield history target list shows it`;
  } else {
    reason = `${name || 'error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
    hint = `check history target ${t}: zshield history target list shows its settings`;
  }
  return new RemoteError(`${label}: ${what}: ${reason}`, { hint, cause: err });
}

/**
 * Read an answer's body chunk by chunk, failing when it stays silent for `idleMs` (the socket's
 * own timeout ends with the headers in some SDK releases; a body can stall after them).
 */
export async function readBody(
  body: unknown,
  idleMs: number,
  onChunk: (chunk: Buffer) => void | Promise<void>,
): Promise<number> {
  const stream = body as Readable;
  let timer: NodeJS.Timeout | null = null;
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      const err = new Error(`no data for ${idleMs / 1000} s`);
      err.name = 'TimeoutError';
      stream.destroy(err);
    }, idleMs);
  };
  let n = 0;
  arm();
  try {
    for await (const chunk of stream) {
      arm();
      const b = chunk as Buffer;
      n += b.length;
      await onChunk(b);
    }
  } finally {
    if (timer) clearTimeout(timer);
  }
  return n;
}

/** A file written whole under `<localPath>.part`, synced, then named: a cut fetch leaves no file. */
export async function writeWhole(
  localPath: string,
  fill: (write: (b: Buffer) => Promise<void>) => Promise<void>,
): Promise<void> {
  const tmp = `${localPath}.part`;
  const out = await open(tmp, 'w', 0o600);
  try {
    await fill(async (b) => {
      await out.write(b);
    });
    await out.sync();
  } finally {
    await out.close();
  }
  await rename(tmp, localPath);
}
