import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { readKeyFile, encryptPassword } from '../../src/system/secrets.js';
import type { HistoryBox } from './history-lib.js';
import type { RgwEnv, S3User } from './rgw.js';

/** The tests' own look at the RGW (as its owner would): buckets, keys, objects read and replaced. */

export function s3As(rgw: RgwEnv, user: S3User = rgw.admin): S3Client {
  return new S3Client({
    endpoint: rgw.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: user.accessKeyId, secretAccessKey: user.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 10_000, socketTimeout: 30_000 },
  });
}

let buckets = 0;
export async function makeBucket(rgw: RgwEnv): Promise<string> {
  const name = `zs-${process.pid}-${buckets++}-${Date.now().toString(36)}`;
  const s3 = s3As(rgw);
  await s3.send(new CreateBucketCommand({ Bucket: name }));
  s3.destroy();
  return name;
}

export async function listKeys(rgw: RgwEnv, bucket: string, prefix = ''): Promise<Map<string, number>> {
  const s3 = s3As(rgw);
  const out = new Map<string, number>();
  let token: string | undefined;
  do {
    const r = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of r.Contents ?? []) out.set(o.Key!, o.Size!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  s3.destroy();
  return out;
}

export async function getObject(rgw: RgwEnv, bucket: string, key: string): Promise<Buffer> {
  const s3 = s3As(rgw);
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const b = Buffer.from(await r.Body!.transformToByteArray());
  s3.destroy();
  return b;
}

export async function putObject(rgw: RgwEnv, bucket: string, key: string, body: Buffer): Promise<void> {
  const s3 = s3As(rgw);
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentMD5: createHash('md5').update(body).digest('base64'),
    }),
  );
  s3.destroy();
}

/** Parts in flight (uploaded, not completed) under a prefix. */
export async function openUploads(rgw: RgwEnv, bucket: string): Promise<number> {
  const s3 = s3As(rgw);
  const r = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  s3.destroy();
  return (r.Uploads ?? []).length;
}

/** The uploads in flight (started, not completed) and how many parts each has stored. */
export async function partsInFlight(rgw: RgwEnv, bucket: string): Promise<{ key: string; parts: number }[]> {
  const s3 = s3As(rgw);
  try {
    const r = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    const out: { key: string; parts: number }[] = [];
    for (const u of r.Uploads ?? []) {
      const p = await s3.send(new ListPartsCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }));
      out.push({ key: u.Key!, parts: (p.Parts ?? []).length });
    }
    return out;
  } finally {
    s3.destroy();
  }
}

/** A byte copy of the repository under `<prefix>repo/` into `<dest>/repo` (as resticOnCopy wants it). */
export async function copyRepoOut(rgw: RgwEnv, bucket: string, prefix: string, dest: string): Promise<void> {
  for (const [key] of await listKeys(rgw, bucket, `${prefix}repo/`)) {
    const rel = key.slice(prefix.length);
    const file = path.join(dest, ...rel.split('/'));
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, await getObject(rgw, bucket, key));
  }
}

/**
 * The append-only policy of README "An S3 target": the box's user may list, read and write under its
 * prefix and may not delete anything, any version, or change the bucket's policy or versioning;
 * the bucket's owner (the vendor's prune credential) may do all.
 */
export function appendOnlyPolicy(bucket: string, prefix: string, boxUid: string): string {
  const box = { AWS: [`arn:aws:iam:::user/${boxUid}`] };
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'BoxLists',
        Effect: 'Allow',
        Principal: box,
        Action: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
        Resource: [`arn:aws:s3:::${bucket}`],
      },
      {
        Sid: 'BoxReadsAndWrites',
        Effect: 'Allow',
        Principal: box,
        Action: ['s3:GetObject', 's3:PutObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
        Resource: [`arn:aws:s3:::${bucket}/${prefix}*`],
      },
      {
        Sid: 'BoxNeverDeletes',
        Effect: 'Deny',
        Principal: box,
        Action: [
          's3:DeleteObject',
          's3:DeleteObjectVersion',
          's3:PutBucketPolicy',
          's3:DeleteBucketPolicy',
          's3:PutBucketVersioning',
          's3:PutLifecycleConfiguration',
        ],
        Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
      },
    ],
  });
}

/** An S3 target entry for a box's config, its secret encrypted with the box's history key file. */
export function s3Target(
  box: HistoryBox,
  rgw: RgwEnv,
  user: S3User,
  bucket: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const keyFile = String(box.config.history['keyFile']);
  return {
    name: 's3',
    type: 's3',
    endpoint: rgw.endpoint,
    allowHttp: true,
    bucket,
    prefix: 'box1/',
    accessKeyId: user.accessKeyId,
    secretAccessKey: encryptPassword(user.secretAccessKey, readKeyFile(keyFile)),
    ...extra,
  };
}
