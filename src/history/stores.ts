import type { HistoryConfig, TargetConfig } from '../config/history.js';
import type { Context } from '../context.js';
import type { RateLimiter } from '../ssh/progress.js';
import type { Store } from './repo-store.js';
import { S3Store } from './s3-store.js';
import { SftpStore } from './sftp-store.js';

/** The Store of a target, by its type: the one place that knows which kinds there are. */
export function openStore(
  ctx: Context,
  history: HistoryConfig,
  target: TargetConfig,
  limiter: RateLimiter | null = null,
): Store {
  return target.type === 's3'
    ? new S3Store(ctx, history, target, limiter)
    : new SftpStore(ctx, history, target, limiter);
}
