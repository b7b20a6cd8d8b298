import type { Context } from '../context.js';
import { VerifyError } from '../errors.js';
import { joinPlans, planToJson } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { acquireLvmLock } from '../system/lock.js';
import { probeVg, type VgState } from '../system/lvm.js';
import { isRunningRoot } from '../system/mounts.js';
import { requireTools } from '../system/tools.js';
import { type BackupRecordV2, writeBackupRecord } from './last-backup.js';
import { refreshBootMenu } from './boot-menu-refresh.js';
import { repairCutRotation } from './repair.js';
import { labelOf, planRotation, requireRoot } from './rotation.js';
import type { Reason } from '../names/lvm-tags.js';
import { namesOf } from '../names/snapshots.js';

export interface BackupOutcome {
  snapshot: string;
  reason: Reason;
  sizeBytes: number;
  time: Date;
  /** A cut-short rotation that was repaired first. */
  repaired: boolean;
}

export interface BackupOptions {
  reason: Reason;
  /** The plan (a repair, then the rotation) as one JSON document on stdout instead of text. */
  json?: boolean;
  /** How long to queue behind another holder of the LVM lock. */
  waitMs: number;
}

/**
 * `zshield backup`: lock, probe, repair a cut-short rotation, plan the rotation, show it, apply
 * it, check the result by probing again, record the outcome. Dry-run stops after showing.
 */
export async function runBackup(ctx: Context, opts: BackupOptions): Promise<BackupOutcome | null> {
  const lock = ctx.dryRun
    ? null
    : await acquireLvmLock({
        runDir: ctx.config.paths.runDir,
        log: ctx.log,
        purpose: `backup (${opts.reason})`,
        waitMs: opts.waitMs,
      });
  // The boot menu's refresh is a plan of its own after the rotation (nested: the rotation's dry run
  // leaves the "nothing was changed" line to it).
  let planned = false;
  try {
    const outcome = await backupLocked(ctx, opts.reason, { json: opts.json ?? false, notLast: true });
    planned = true;
    return outcome;
  } finally {
    // Also after a failure: a drop-first rotation may have left none. A dry run that stopped at a
    // check shows nothing more.
    if (planned || !ctx.dryRun)
      await refreshBootMenu(ctx, {}, opts.json && ctx.dryRun ? { show: 'none' } : {});
    await lock?.release();
  }
}

/**
 * The backup itself, for callers that already hold the LVM lock (restore, factory reset).
 * `record: false` keeps the outcome out of the record files: a restore run from the golden medium
 * would otherwise write them into the golden medium's own (read-only) /boot and run-time stateDir,
 * which are not this system's; status reads that backup from snap0's tags. `notLast`: a plan of
 * the same command follows (the boot menu's refresh), which ends a dry run.
 */
export async function backupLocked(
  ctx: Context,
  reason: Reason,
  opts: { record?: boolean; json?: boolean; notLast?: boolean } = {},
): Promise<BackupOutcome | null> {
  const keep = opts.record ?? true;
  const names = namesOf(ctx.config);
  const started = ctx.clock.now();
  try {
    await requireTools(ctx.runner, ['lvs', 'vgs']);
    const probed = await probeVg(ctx.runner, names.vg);
    requireRoot(probed, names);
    // A rotation cut short is repaired first (on a dry run: shown, and the backup planned on the
    // state the repair leaves).
    const show = opts.json ? 'none' : ctx.dryRun ? 'out' : 'log';
    const { state, repair } = await repairCutRotation(ctx, probed, show);
    const plan = planRotation({
      state,
      config: ctx.config,
      reason,
      now: started,
      rootIsRunning: rootIsRunning(state, names.root),
    });
    // --json: the whole plan (the repair first, when a rotation was cut short) as one document.
    if (opts.json)
      ctx.out.print(JSON.stringify(planToJson(repair ? joinPlans(plan.title, repair, plan) : plan), null, 2));
    const run = await runPlan(ctx, plan, { confirm: 'none', show, notLast: opts.notLast ?? false });
    if (!run.applied) return null;

    const after = await probeVg(ctx.runner, names.vg);
    const snap = after.lvs.find((l) => l.name === names.snap);
    if (snap?.kind !== 'snapshot' || snap.invalid) {
      throw new VerifyError(`after the rotation ${names.vg}/${names.snap} is missing or invalid`);
    }
    const outcome: BackupOutcome = {
      snapshot: `${names.vg}/${names.snap}`,
      reason,
      sizeBytes: snap.sizeBytes,
      time: labelOf(snap).time ?? started,
      repaired: repair !== null,
    };
    record(ctx, keep, {
      result: 'ok',
      reason,
      at: started.toISOString(),
      durationMs: ctx.clock.now().getTime() - started.getTime(),
      snapshot: outcome.snapshot,
      sizeBytes: outcome.sizeBytes,
      snapshotTime: outcome.time.toISOString(),
    });
    ctx.log.info(`backup done: ${outcome.snapshot} (${reason}) at ${outcome.time.toISOString()}`);
    return outcome;
  } catch (err) {
    if (!ctx.dryRun) {
      record(ctx, keep, {
        result: 'failed',
        reason,
        at: started.toISOString(),
        durationMs: ctx.clock.now().getTime() - started.getTime(),
        error: err instanceof Error ? err.message : String(err),
      });
    }
    throw err;
  }
}

/**
 * Repair a cut-short rotation, if any (the daemon does this at start). When the repair leaves no
 * snapshot at all (the old one had been dropped first), a backup is taken so a restore point exists.
 */
export async function repairIfNeeded(
  ctx: Context,
  waitMs: number,
): Promise<'none' | 'repaired' | 'backed-up'> {
  const names = namesOf(ctx.config);
  const lock = await acquireLvmLock({
    runDir: ctx.config.paths.runDir,
    log: ctx.log,
    purpose: 'repair',
    waitMs,
  });
  let state: VgState;
  let repaired: boolean;
  try {
    const r = await repairCutRotation(ctx, await probeVg(ctx.runner, names.vg));
    state = r.state;
    repaired = r.repair !== null;
    if (repaired) await refreshBootMenu(ctx, { state });
  } finally {
    await lock.release();
  }
  if (!repaired) return 'none';
  if (state.lvs.some((l) => l.name === names.snap)) return 'repaired';
  ctx.log.warn(`no ${names.snap} is left after the repair: taking a backup now`);
  await runBackup(ctx, { reason: 'repair', waitMs });
  return 'backed-up';
}

function rootIsRunning(state: VgState, rootLv: string): boolean {
  return isRunningRoot(state.lvs.find((l) => l.name === rootLv));
}

/**
 * The outcome, beside the event log (outside lv-root, so a restore does not roll it back) and in
 * stateDir; `status` checks it against snap0's tags (status/last-backup.ts).
 */
function record(ctx: Context, keep: boolean, rec: BackupRecordV2): void {
  if (keep) writeBackupRecord(ctx.writes, ctx.config, ctx.log, rec);
  else ctx.log.debug(`backup ${rec.result} (${rec.reason}): not recorded here (not this system's root)`);
}
