import { rmSync } from 'node:fs';
import type { Context } from '../context.js';
import type { Config } from '../config/schema.js';
import { ZshieldError } from '../errors.js';
import {
  type Health,
  labelOf,
  refreshBootMenu,
  repairIfNeeded,
  runBackup,
  snapshotHealth,
} from '../restore-point/index.js';
import { probeVg } from '../system/lvm.js';
import { daemonInfoFile, writeDaemonInfo } from '../state/daemon-info.js';
import { dailyDue, nextDailyRun } from '../state/schedule.js';
import { namesOf } from '../names/snapshots.js';

export interface DaemonHooks {
  /** Called on SIGHUP: returns the new config, or throws (the old one is kept). */
  reloadConfig(): Promise<Config>;
  /** After each health check (and the backup it may start): the metrics file. Never throws. */
  afterCheck?(ctx: Context): Promise<unknown>;
}

/** After a failed daily backup, wait this long before trying again (the next tick would hammer LVM). */
const RETRY_AFTER_FAILURE_MS = 15 * 60_000;
/** Queue behind a manual backup for up to this long. */
const LOCK_WAIT_MS = 10 * 60_000;

/** What the daemon carries from tick to tick. */
interface DaemonState {
  startedAt: Date;
  config: Config;
  lastHealth: Health | null;
  /** No daily backup before this (epoch ms) after a failure. */
  retryAfter: number;
  /** Stops a long job (an image) on SIGTERM; a backup still finishes first. */
  jobs: AbortController;
}

/**
 * The backup daemon. It wakes every `daemon.checkEverySeconds` and compares the wall clock with the
 * schedule (rather than sleeping until 03:00), so a clock moved by NTP or by hand is honoured on
 * the next tick. Each tick: judge the snapshot's fill level, then take the daily backup if due and
 * no merge is pending. SIGTERM stops it between ticks (a running backup finishes first); SIGHUP
 * reloads the config.
 */
export async function runDaemon(ctx: Context, hooks: DaemonHooks): Promise<void> {
  const st: DaemonState = {
    startedAt: ctx.clock.now(),
    config: ctx.config,
    lastHealth: null,
    retryAfter: 0,
    jobs: new AbortController(),
  };
  const signals = listenForSignals(ctx, st);
  ctx.log.info(
    `daemon started (pid ${process.pid}): daily backup at ${st.config.daemon.dailyAt.text}, catch-up ${st.config.daemon.catchUp ? 'on' : 'off'}, check every ${st.config.daemon.checkEverySeconds} s`,
  );
  publish(ctx, st, null);
  try {
    await repairAtStart(ctx);
    while (!signals.stopping) {
      if (signals.takeReload()) await reloadConfig(ctx, st, hooks);
      publish(ctx, st, await tick(ctx, st));
      await hooks.afterCheck?.(ctx);
      if (signals.stopping) break;
      await signals.sleep(st.config.daemon.checkEverySeconds * 1000);
    }
  } finally {
    signals.remove();
    rmSync(daemonInfoFile(st.config.paths.runDir), { force: true });
    ctx.log.info('daemon stopped');
  }
}

/** SIGTERM/SIGINT stop the daemon between ticks (and a running image job); SIGHUP asks for a reload. */
function listenForSignals(ctx: Context, st: DaemonState) {
  let wake: (() => void) | null = null;
  let reload = false;
  const self = {
    stopping: false,
    takeReload: () => {
      const r = reload;
      reload = false;
      return r;
    },
    sleep: (ms: number) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(t);
          wake = null;
          resolve();
        };
      }),
    remove: () => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onTerm);
      process.off('SIGHUP', onHup);
    },
  };
  const onTerm = () => {
    ctx.log.info('daemon: stop requested');
    self.stopping = true;
    st.jobs.abort();
    wake?.();
  };
  const onHup = () => {
    reload = true;
    wake?.();
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onTerm);
  process.on('SIGHUP', onHup);
  return self;
}

function publish(ctx: Context, st: DaemonState, nextRun: Date | null): void {
  writeDaemonInfo(ctx.writes, st.config.paths.runDir, {
    pid: process.pid,
    startedAt: st.startedAt.toISOString(),
    nextRun: nextRun?.toISOString() ?? null,
    lastCheck: ctx.clock.now().toISOString(),
    lastHealth: st.lastHealth ? `${st.lastHealth.level}: ${st.lastHealth.message}` : null,
  });
}

async function repairAtStart(ctx: Context): Promise<void> {
  try {
    const repaired = await repairIfNeeded(ctx, LOCK_WAIT_MS);
    if (repaired !== 'none') ctx.log.info(`daemon: interrupted rotation ${repaired}`);
  } catch (err) {
    ctx.log.error(`daemon: repair failed: ${describe(err)}`);
  }
}

async function reloadConfig(ctx: Context, st: DaemonState, hooks: DaemonHooks): Promise<void> {
  try {
    st.config = await hooks.reloadConfig();
    ctx.config = st.config;
    ctx.log.info('daemon: config reloaded');
  } catch (err) {
    ctx.log.error(`daemon: config not reloaded, keeping the old one: ${describe(err)}`);
  }
}

/** One look at LVM: health, then the daily backup (and the jobs chained after it) when due. */
async function tick(ctx: Context, st: DaemonState): Promise<Date | null> {
  const config = st.config;
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
  else if (st.lastHealth && st.lastHealth.level !== 'ok') ctx.log.info(`health: ${health.message}`);
  st.lastHealth = health;
  // The kernel invalidates an overflowed snap0 without telling anyone: the menu must stop offering it.
  await refreshBootMenu(ctx, { state, onlyIfChanged: true });
  if (!root) {
    ctx.log.error(`daemon: ${names.vg}/${names.root} not found; no backup possible`);
    return null;
  }
  const dueInput = {
    now,
    at: config.daemon.dailyAt,
    lastBackup: snap && !snap.invalid ? labelOf(snap).time : null,
    startedAt: st.startedAt,
    catchUp: config.daemon.catchUp,
  };
  if (!dailyDue(dueInput)) return nextDailyRun(dueInput);
  if (root.merging || snap?.merging) {
    ctx.log.warn(
      'daemon: daily backup skipped: a merge (restore) is pending; it finishes at the next activation',
    );
    return now;
  }
  if (now.getTime() < st.retryAfter) return new Date(st.retryAfter);
  try {
    ctx.log.info('daemon: daily backup due');
    await runBackup(ctx, { reason: 'daily', waitMs: LOCK_WAIT_MS });
    st.retryAfter = 0;
    const { afterDailyBackup } = await import('./jobs.js');
    await afterDailyBackup(ctx, st.jobs.signal, LOCK_WAIT_MS);
  } catch (err) {
    st.retryAfter = now.getTime() + RETRY_AFTER_FAILURE_MS;
    ctx.log.error(
      `daemon: daily backup failed: ${describe(err)}; retrying at ${new Date(st.retryAfter).toISOString()}`,
    );
    return new Date(st.retryAfter);
  }
  const after = ctx.clock.now();
  return nextDailyRun({ ...dueInput, now: after, lastBackup: after });
}

function describe(err: unknown): string {
  if (err instanceof ZshieldError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  return err instanceof Error ? err.message : String(err);
}
