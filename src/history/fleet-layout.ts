import path from 'node:path/posix';
import type { HistoryConfig, TargetConfig } from '../config/history.js';
import type { Context } from '../context.js';
import { checkPrivateFile, openPassword } from '../system/secrets.js';
import { Connection } from '../ssh/connection.js';
import { loadCredentials } from '../ssh/credentials.js';
import { loadSdk, makeClient, s3Error } from './s3-client.js';
import { forTarget, remoteTargetOf } from './sftp-store.js';

/**
 * Where a fleet's boxes are on one target: each box replicates to its own folder under the
 * target's directory (SFTP) or prefix (S3), named for the box (`<directory>/<box>/repo`,
 * `<prefix><box>/catalog/`): the folder's name is the name its pinned key is filed under.
 */

/** The target as one box sees it: the fleet's target moved down into the box's folder. */
export function boxTarget(t: TargetConfig, box: string): TargetConfig {
  return t.type === 's3'
    ? { ...t, prefix: `${t.prefix}${box}/` }
    : { ...t, directory: path.join(t.directory, box) };
}

/** A box's folder name: what boxTarget accepts (no path separators, no dot names). */
export const BOX_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** The folders under the target that hold a box's history (a `repo` or `catalog` folder), sorted. */
export async function listBoxes(ctx: Context, history: HistoryConfig, t: TargetConfig): Promise<string[]> {
  const names = t.type === 's3' ? await listS3Boxes(ctx, history, t) : await listSftpBoxes(ctx, history, t);
  return names.filter((n) => BOX_NAME.test(n)).sort();
}

async function listSftpBoxes(
  ctx: Context,
  history: HistoryConfig,
  t: Extract<TargetConfig, { type: 'sftp' }>,
): Promise<string[]> {
  const target = remoteTargetOf(history, t);
  let conn: Connection;
  try {
    conn = new Connection(ctx, target, loadCredentials(ctx, target), 2000);
  } catch (err) {
    throw forTarget(err, t);
  }
  try {
    return await conn.retry(`list ${t.directory}`, async (s) => {
      const dirs = async (dir: string) =>
        new Promise<string[]>((resolve, reject) =>
          s.sftp.readdir(dir, (err, list) => {
            if (!err) resolve(list.filter((e) => e.attrs.isDirectory()).map((e) => e.filename));
            else if ((err as { code?: number }).code === 2) resolve([]);
            else reject(s.wrap(err, `list ${dir}`));
          }),
        );
      const out: string[] = [];
      for (const d of await dirs(t.directory)) {
        const inner = await dirs(path.join(t.directory, d));
        if (inner.includes('repo') || inner.includes('catalog')) out.push(d);
      }
      return out;
    });
  } catch (err) {
    throw forTarget(err, t);
  } finally {
    conn.close();
  }
}

async function listS3Boxes(
  ctx: Context,
  history: HistoryConfig,
  t: Extract<TargetConfig, { type: 's3' }>,
): Promise<string[]> {
  if (ctx.configFile) checkPrivateFile(ctx.configFile, 'config file');
  const secretAccessKey = openPassword({
    ciphertext: t.secretAccessKey,
    keyFile: history.keyFile,
    log: ctx.log,
  });
  const s3 = await makeClient(t, {
    secretAccessKey,
    timeoutMs: history.connectTimeoutSeconds * 1000,
    retries: history.retries,
  });
  const sdk = await loadSdk();
  const label = `${t.name} (s3 ${t.endpoint.replace(/\/+$/, '')}/${t.bucket}/${t.prefix})`;
  // The folders one level down (Delimiter), then those of each: `<box>/repo/` or `<box>/catalog/`.
  const folders = async (prefix: string): Promise<string[]> => {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3
        .send(
          new sdk.ListObjectsV2Command({
            Bucket: t.bucket,
            Prefix: prefix,
            Delimiter: '/',
            ContinuationToken: token,
          }),
          { abortSignal: ctx.signal },
        )
        .catch((err: unknown) => {
          throw s3Error(err, t, label, `list ${prefix || '/'}`);
        });
      for (const p of page.CommonPrefixes ?? [])
        out.push((p.Prefix ?? '').slice(prefix.length).replace(/\/$/, ''));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  };
  try {
    const out: string[] = [];
    for (const d of await folders(t.prefix)) {
      if (!BOX_NAME.test(d)) continue;
      const inner = await folders(`${t.prefix}${d}/`);
      if (inner.includes('repo') || inner.includes('catalog')) out.push(d);
    }
    return out;
  } finally {
    s3.destroy();
  }
}
