import type { Context } from '../context.js';
import { lastOccurrence, type TimeOfDay } from '../state/schedule.js';
import { ZshieldError } from '../errors.js';
import type { ImageConfig } from '../config/image.js';
import { hostKind, listImages } from '../image/index.js';

/** The most recent scheduled moment for an image at or before `now` (local time), or null for none. */
export function lastImageSlot(now: Date, schedule: ImageConfig['schedule'], at: TimeOfDay): Date | null {
  if (schedule === null) return null;
  const slot = lastOccurrence(now, at);
  if (schedule === 'daily') return slot;
  while (slot.getDay() !== schedule.weekday) slot.setDate(slot.getDate() - 1);
  return slot;
}

/**
 * Is a scheduled image due? When the newest image of this host is older than the last scheduled
 * moment. The daemon asks right after a daily backup, so a box that was off on the day (or whose
 * image failed) makes it after its next daily backup.
 */
export function imageDue(input: {
  now: Date;
  schedule: ImageConfig['schedule'];
  at: TimeOfDay;
  lastImage: Date | null;
}): boolean {
  const slot = lastImageSlot(input.now, input.schedule, input.at);
  if (!slot) return false;
  return !input.lastImage || input.lastImage.getTime() < slot.getTime();
}

/**
 * Everything chained after the daily backup, in one place: the backup's copy off the box (when
 * remote copy is configured), then the scheduled image if due (and its copy), then the history
 * take and its replication, then its retention (when history.enabled). Never throws: a
 * failure is logged, and the backup's own outcome stands.
 */
export async function afterDailyBackup(ctx: Context, jobs: AbortSignal, waitMs: number): Promise<void> {
  const { copyAfterJob } = await import('../remote/index.js');
  await copyAfterJob(ctx, 'backup');
  await imageAfterBackup({ ...ctx, signal: jobs }, waitMs);
  await (await import('../history/index.js')).historyAfterBackup({ ...ctx, signal: jobs });
  // Retention on the daily schedule: history.keep is applied without anyone running prune.
  await (await import('../history/index.js')).retentionAfterTake({ ...ctx, signal: jobs });
}

/**
 * The daemon's hook after a daily backup: the scheduled image if due, then a remote copy of it
 * when the config asks for one. Never throws (a failure is logged; the backup's own outcome stands).
 * Returns whether an image was made.
 */
export async function imageAfterBackup(ctx: Context, waitMs: number): Promise<boolean> {
  const cfg = ctx.config.image;
  if (cfg.schedule === null) return false;
  const kind = hostKind();
  const newest = listImages(cfg.dir).images.find((e) => e.kind === kind && e.image !== null);
  const now = ctx.clock.now();
  if (
    !imageDue({ now, schedule: cfg.schedule, at: ctx.config.daemon.dailyAt, lastImage: newest?.time ?? null })
  ) {
    return false;
  }
  try {
    ctx.log.info('daemon: image due');
    const { runImageCreate } = await import('../image/index.js');
    await runImageCreate(ctx, { waitMs, kind });
  } catch (err) {
    const msg =
      err instanceof ZshieldError && err.hint ? `${err.message} (${err.hint})` : (err as Error).message;
    ctx.log.error(`daemon: image failed: ${msg}; tried again after the next daily backup`);
    return false;
  }
  const { copyAfterJob } = await import('../remote/index.js');
  await copyAfterJob(ctx, 'image');
  return true;
}
