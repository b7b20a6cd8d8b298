import { createHash, randomBytes } from 'node:crypto';
import { type S3TargetConfig, s3TargetSchema, targetWhere } from '../config/history.js';
import { DEFAULT_CONFIG_PATH } from '../config/paths.js';
import type { Context } from '../context.js';
import { ConfigError, RefusedError, UsageError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { loadSdk, makeClient, s3Error, statusOf } from './s3-client.js';
import { writeTargetStep } from './targets.js';

/**
 * `history target add NAME s3://BUCKET/PREFIX --endpoint URL --access-key-id ID --secret-stdin`:
 * an object-store target, added only after its key listed the bucket and wrote and removed a file
 * under the prefix. The secret comes on stdin (never an argument) and is stored encrypted with
 * history.keyFile, as an SFTP target's password is.
 */

export interface S3Spec {
  bucket: string;
  prefix: string;
}

/** `s3://BUCKET` or `s3://BUCKET/PREFIX` (the prefix gets its trailing `/`). */
export function parseS3Spec(text: string): S3Spec | null {
  const m = /^s3:\/\/([^/\s]+)(?:\/(.*))?$/.exec(text);
  if (!m) return null;
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: m[1]!, prefix: prefix ? `${prefix}/` : '' };
}

export interface AddS3TargetOptions {
  name: string;
  spec: S3Spec;
  endpoint: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  allowHttp: boolean;
  /** The store's policy denies this key every delete: checked (a delete must be refused), then kept. */
  appendOnly: boolean;
}

export async function runS3TargetAdd(ctx: Context, opts: AddS3TargetOptions): Promise<void> {
  const h = ctx.config.history;
  const configFile = ctx.configFile ?? DEFAULT_CONFIG_PATH;
  ctx.log.redact(opts.secretAccessKey);
  if (!opts.secretAccessKey) throw new UsageError('--secret-stdin read an empty secret');
  if (h.targets.some((t) => t.name === opts.name))
    throw new RefusedError(`history target ${opts.name} exists already`, {
      hint: `zshield history target remove ${opts.name} first`,
    });
  const { entry, cfg } = targetEntry(opts);
  const where = targetWhere(cfg);
  const label = `${opts.name} (${where})`;
  const client = () =>
    makeClient(cfg, {
      secretAccessKey: opts.secretAccessKey,
      timeoutMs: h.connectTimeoutSeconds * 1000,
      retries: h.retries,
    });
  const plan: Plan = {
    title: `Add history target ${opts.name} (${where})`,
    notes: [
      `signs with the access key ${opts.accessKeyId}; its secret stored encrypted with ${h.keyFile}`,
      `the repository goes under ${cfg.prefix}repo/, the catalog under ${cfg.prefix}catalog/ in bucket ${cfg.bucket}`,
      ...(cfg.endpoint.startsWith('http://')
        ? ['the endpoint is http:// (allowed): the data travels without TLS']
        : []),
    ],
    checks: [
      {
        title: `list bucket ${cfg.bucket} with the key`,
        run: () => probeList(ctx, cfg, label, client),
      },
    ],
    steps: [
      {
        title: cfg.appendOnly
          ? `check write access and that deletes are refused: write a file under ${cfg.prefix || 'the bucket'} (it stays) and try to remove it`
          : `check write access: write a file under ${cfg.prefix || 'the bucket'} and remove it`,
        edit: {
          files: [`${where}.zshield-probe-*`],
          apply: () => probeWrite(ctx, cfg, label, client),
        },
      },
      writeTargetStep(ctx, configFile, h.keyFile, opts.name, entry, {
        field: 'secretAccessKey',
        value: opts.secretAccessKey,
        what: 'secret',
      }),
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none', show: 'out' });
}

/** The config entry (its secret still to encrypt), checked by the schema now: an http:// endpoint stops here. */
function targetEntry(opts: AddS3TargetOptions): { entry: Record<string, unknown>; cfg: S3TargetConfig } {
  const entry: Record<string, unknown> = {
    name: opts.name,
    type: 's3',
    endpoint: opts.endpoint,
    bucket: opts.spec.bucket,
    prefix: opts.spec.prefix,
    accessKeyId: opts.accessKeyId,
    ...(opts.region !== undefined ? { region: opts.region } : {}),
    ...(opts.allowHttp ? { allowHttp: true } : {}),
    ...(opts.appendOnly ? { appendOnly: true } : {}),
  };
  const parsed = s3TargetSchema.safeParse({ ...entry, secretAccessKey: 'v1:00000000:AA==' });
  if (!parsed.success)
    throw new ConfigError(
      parsed.error.issues.map((i) => ({
        where: `history target ${opts.name}: ${i.path.join('.') || 'endpoint'}`,
        message: i.message,
      })),
      { hint: 'an http:// endpoint (no TLS) needs --allow-http' },
    );
  return { entry, cfg: parsed.data };
}

type ClientMaker = () => ReturnType<typeof makeClient>;

/** The key lists the bucket: the endpoint answers, the key signs, the bucket exists. */
async function probeList(
  ctx: Context,
  cfg: S3TargetConfig,
  label: string,
  client: ClientMaker,
): Promise<void> {
  const [s3, sdk] = [await client(), await loadSdk()];
  try {
    await s3.send(new sdk.ListObjectsV2Command({ Bucket: cfg.bucket, Prefix: cfg.prefix, MaxKeys: 1 }), {
      abortSignal: ctx.signal,
    });
  } catch (err) {
    throw s3Error(err, cfg, label, `list bucket ${cfg.bucket}`);
  } finally {
    s3.destroy();
  }
}

/**
 * The key writes under the prefix (with Content-MD5, as every upload) and removes what it wrote;
 * on an append-only target that removal must be refused.
 */
async function probeWrite(
  ctx: Context,
  cfg: S3TargetConfig,
  label: string,
  client: ClientMaker,
): Promise<void> {
  const [s3, sdk] = [await client(), await loadSdk()];
  const key = `${cfg.prefix}.zshield-probe-${randomBytes(4).toString('hex')}`;
  const body = Buffer.from('zshield\n');
  try {
    await s3.send(
      new sdk.PutObjectCommand({
        Bucket: cfg.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ContentMD5: createHash('md5').update(body).digest('base64'),
      }),
      { abortSignal: ctx.signal },
    );
  } catch (err) {
    s3.destroy();
    throw s3Error(err, cfg, label, 'write a test file');
  }
  try {
    await s3.send(new sdk.DeleteObjectCommand({ Bucket: cfg.bucket, Key: key }), { abortSignal: ctx.signal });
  } catch (err) {
    if (cfg.appendOnly && statusOf(err) === 403) {
      ctx.out.print(
        `deletes are refused to key ${cfg.accessKeyId}, as on an append-only target (${key} stays)`,
      );
      return;
    }
    throw s3Error(err, cfg, label, 'remove the test file');
  } finally {
    s3.destroy();
  }
  if (cfg.appendOnly)
    throw new RefusedError(
      `${label}: key ${cfg.accessKeyId} removed ${key}: the store lets it delete, so the target is not append-only`,
      {
        hint: "the bucket's policy must deny this key s3:DeleteObject and s3:DeleteObjectVersion (README: an S3 target)",
      },
    );
}
