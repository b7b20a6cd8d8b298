import { rmSync } from 'node:fs';
import type { Context } from '../context.js';
import type { Config } from '../config/schema.js';
import { ZshieldError } from '../errors.js';
import { repairIfNeeded, runBackup } from '../snapshot/backup.js';
import { type Health, snapshotHealth } from '../snapshot/health.js';
import { labelOf, namesOf } from '../snapshot/rotation.js';
import { probeVg } from '../system/lvm.js';
import { daemonInfoFile, writeDaemonInfo } from './info.js';
import { dailyDue, nextDailyRun } from './schedule.js';

export interface DaemonHooks {
  /** Called on SIGHUP: returns the new config, or throws (the old one is kept). */
  reloadConfig(): Promise<Config>;
}

/** After a failed daily backup, wait this long before trying again (the next tick would hammer LVM). */
const RETRY_AFTER_FAILURE_MS = 15 * 60_000;
/** Queue behind a manual backup for up to this long. */
const LOCK_WAIT_MS = 10 * 60_000;

/**
 * The backup daemon. It wakes every `daemon.checkEverySeconds` and compares the wall clock with the
 * schedule (rather than sleeping until 03:00), so a clock moved by NTP or by hand is honoured on
 * the next tick. Each tick: judge the snapshot's fill level, then take the daily backup if due and
 * no merge is pending. SIGTERM stops it between ticks (a running backup finishes first); SIGHUP
 * reloads the config.
 */
export async function runDaemon(ctx: Context, hooks: DaemonHooks): Promise<void> {
  const startedAt = ctx.clock.now();
  let config = ctx.config;
  let stopping = false;
  let reload = false;
  let wake: (() => void) | null = null;
  let lastHealth: Health | null = null;
  let retryAfter = 0;
  // Stops a long job (an image) on SIGTERM; a backup still finishes first.
  const jobs = new AbortController();

  const onTerm = () => {
    ctx.log.info('daemon: stop requested');
    stopping = true;
    jobs.abort();
    wake?.();
  };
  const onHup = () => {
    reload = true;
    wake?.();
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onTerm);
  process.on('SIGHUP', onHup);

  const publish = (nextRun: Date | null) =>
    writeDaemonInfo(config.paths.runDir, {
      pid: process.pid,
      startedAt: startedAt.toISOString(),
      nextRun: nextRun?.toISOString() ?? null,
      lastCheck: ctx.clock.now().toISOString(),
      lastHealth: lastHealth ? `${lastHealth.level}: ${lastHealth.message}` : null,
    });

  ctx.log.info(
    `daemon started (pid ${process.pid}): daily backup at ${config.daemon.dailyAt.text}, catch-up ${config.daemon.catchUp ? 'on' : 'off'}, check every ${config.daemon.checkEverySeconds} s`,
  );
  publish(null);
  try {
    try {
      const repaired = await repairIfNeeded(ctx, LOCK_WAIT_MS);
      if (repaired !== 'none') ctx.log.info(`daemon: interrupted rotation ${repaired}`);
    } catch (err) {
      ctx.log.error(`daemon: repair failed: ${describe(err)}`);
    }
    while (!stopping) {
      if (reload) {
        reload = false;
        try {
          config = await hooks.reloadConfig();
          ctx.config = config;
          ctx.log.info('daemon: config reloaded');
        } catch (err) {
          ctx.log.error(`daemon: config not reloaded, keeping the old one: ${describe(err)}`);
        }
      }
      const next = await tick();
      publish(next);
      if (stopping) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, config.daemon.checkEverySeconds * 1000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onTerm);
    process.off('SIGHUP', onHup);
    rmSync(daemonInfoFile(config.paths.runDir), { force: true });
    ctx.log.info('daemon stopped');
  }

  async function tick(): Promise<Date | null> {
    const names = namesOf(config);
    const now = ctx.clock.now();
    let state: Awaited<ReturnType<typeof probeVg>>;
    try {
      state = await probeVg(ctx.runner, names.vg);
    } catch (err) {
      ctx.log.error(`daemon: cannot probe LVM: ${describe(err)}`);
      return null;
    }
    const root = state.lvs.find((l) => l.name === names.root);
    const snap = state.lvs.find((l) => l.name === names.snap);
    const health = snapshotHealth(snap, config);
    // Warnings and errors go to the log on every tick: whoever reads it at 3 a.m. must see them.
    if (health.level !== 'ok') ctx.log.log(health.level, `health: ${health.message}`);
    else if (lastHealth && lastHealth.level !== 'ok') ctx.log.info(`health: ${health.message}`);
    lastHealth = health;
    if (!root) {
      ctx.log.error(`daemon: ${names.vg}/${names.root} not found; no backup possible`);
      return null;
    }
    const dueInput = {
      now,
      at: config.daemon.dailyAt,
      lastBackup: snap && !snap.invalid ? labelOf(snap).time : null,
      startedAt,
      catchUp: config.daemon.catchUp,
    };
    if (!dailyDue(dueInput)) return nextDailyRun(dueInput);
    if (root.merging || snap?.merging) {
      ctx.log.warn(
        'daemon: daily backup skipped: a merge (restore) is pending; it finishes at the next activation',
      );
      return now;
    }
    if (now.getTime() < retryAfter) return new Date(retryAfter);
    try {
      ctx.log.info('daemon: daily backup due');
      await runBackup(ctx, { reason: 'daily', waitMs: LOCK_WAIT_MS });
      retryAfter = 0;
      // Off the box as well, when remote copy is configured (never throws: a failure is logged).
      const { copyAfterJob } = await import('../remote/copy.js');
      await copyAfterJob(ctx, 'backup');
      // The scheduled image, when due; never throws (image/schedule.ts).
      const { imageAfterBackup } = await import('./jobs.js');
      await imageAfterBackup({ ...ctx, signal: jobs.signal }, LOCK_WAIT_MS);
    } catch (err) {
      retryAfter = now.getTime() + RETRY_AFTER_FAILURE_MS;
      ctx.log.error(
        `daemon: daily backup failed: ${describe(err)}; retrying at ${new Date(retryAfter).toISOString()}`,
      );
      return new Date(retryAfter);
    }
    const after = ctx.clock.now();
    return nextDailyRun({ ...dueInput, now: after, lastBackup: after });
  }
}

function describe(err: unknown): string {
  if (err instanceof ZshieldError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  return err instanceof Error ? err.message : String(err);
}
