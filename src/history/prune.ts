import { targetWhere } from '../config/history.js';
import type { Context } from '../context.js';
import { ZshieldError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import type { SigningKey } from '../system/signing.js';
import { appendCatalog, catalogFile, repoFilesRecord, verifyCatalog } from './catalog.js';
import { replicateLocked } from './replicate.js';
import type { TargetReport } from './replicate-report.js';
import { historyLock } from './target-select.js';
import { catalogKey, repoDir, resticFor } from './repo.js';
import { readState } from './state.js';

/**
 * Retention as restic does it (`forget --keep-daily/weekly/monthly`, then `prune`), with one rule
 * of ours on top: a snapshot that has not reached every target is kept, whatever the policy says,
 * so a target that was down never loses a backup it has not received. The targets then follow:
 * replication sends the new index and removes what prune removed, in the safe order.
 */
export interface PruneReport {
  forgotten: string[];
  keptForTargets: { fingerprint: string; missingOn: string[] }[];
  replication: TargetReport[];
}

export async function runHistoryPrune(ctx: Context, opts: { replicate: boolean }): Promise<PruneReport> {
  const h = ctx.config.history;
  const report: PruneReport = { forgotten: [], keptForTargets: [], replication: [] };
  let key: SigningKey | null = null;
  const restic = resticFor(ctx);
  const lock = await historyLock(ctx, 'history prune');
  try {
    if (!ctx.dryRun) await restic.unlockStale();
    const plan: Plan = {
      title: `Retention of the history (keep daily ${h.keep.daily}, weekly ${h.keep.weekly}, monthly ${h.keep.monthly})`,
      notes: ['a snapshot not yet on every target is kept whatever the policy says'],
      checks: [
        {
          title: 'the catalog verifies and the repository opens with history.password',
          run: async () => {
            key = await catalogKey(ctx);
            verifyCatalog(h.dir, key.publicText);
            await restic.open();
          },
        },
        {
          title: 'what the policy removes, less what a target lacks',
          run: async () => {
            Object.assign(report, choose(ctx, await restic.wouldForget(h.keep)));
            for (const k of report.keptForTargets)
              ctx.out.print(`  kept ${k.fingerprint}: not yet on ${k.missingOn.join(', ')}`);
            for (const id of report.forgotten)
              ctx.out.print(`  ${ctx.dryRun ? 'would forget' : 'forget'} ${id}`);
            if (!report.forgotten.length) ctx.out.print('history: nothing to forget');
            const blocking = [...new Set(report.keptForTargets.flatMap((k) => k.missingOn))];
            if (blocking.length)
              ctx.log.warn(
                `history: retention is held back by target(s) ${blocking.map((n) => lagOf(ctx, n)).join(', ')}: ${report.keptForTargets.length} snapshot(s) past history.keep are kept until they reach it (zshield history status)`,
              );
          },
        },
      ],
      steps: [
        {
          title: 'forget those snapshots, prune the repository, record them as forgotten in the catalog',
          edit: {
            files: [repoDir(h), catalogFile(h.dir)],
            apply: async () => {
              if (!report.forgotten.length) return;
              await restic.forget(report.forgotten);
              await restic.prune();
              recordForgotten(ctx, key!, report.forgotten);
              ctx.out.print(
                `history: ${report.forgotten.length} snapshot(s) forgotten and the repository pruned`,
              );
            },
          },
        },
        ...(opts.replicate && h.targets.length
          ? [
              {
                title: `replicate to ${h.targets.map((t) => t.name).join(', ')}`,
                edit: {
                  files: h.targets.map(targetWhere),
                  apply: async () => {
                    report.replication = await replicateLocked(ctx, h.targets);
                  },
                },
              },
            ]
          : []),
      ],
    };
    await runPlan(ctx, plan, { confirm: 'none', show: ctx.dryRun ? 'out' : 'log' });
    return report;
  } finally {
    await lock.release();
  }
}

/**
 * A target that holds retention back, with why it may stay so: when it last took a replication
 * and its last error (a target down for days reads as such in the daemon's log, every day).
 */
function lagOf(ctx: Context, name: string): string {
  const s = readState(ctx.config.history.dir)[name];
  const since = s?.lastSuccess
    ? `last replicated ${s.lastSuccess}, ${hoursSince(ctx, s.lastSuccess)} h ago`
    : 'never replicated';
  return `${name} (${since}${s?.lastError ? `; last error: ${s.lastError}` : ''})`;
}

function hoursSince(ctx: Context, iso: string): string {
  return ((ctx.clock.now().getTime() - Date.parse(iso)) / 3600_000).toFixed(1);
}

/** Pure but for the targets' state: the policy's candidates split by whether every target has them. */
function choose(ctx: Context, candidates: readonly string[]): Omit<PruneReport, 'replication'> {
  const h = ctx.config.history;
  const state = readState(h.dir);
  const out: Omit<PruneReport, 'replication'> = { forgotten: [], keptForTargets: [] };
  for (const id of candidates) {
    const missingOn = h.targets
      .filter((t) => !(state[t.name]?.snapshots ?? []).includes(id))
      .map((t) => t.name);
    if (missingOn.length) out.keptForTargets.push({ fingerprint: id, missingOn });
    else out.forgotten.push(id);
  }
  return out;
}

/**
 * The daemon's retention, after the daily take: history.keep applied every day on its own. Never
 * throws; a target that holds it back is named in the log by runHistoryPrune's warning.
 */
export async function retentionAfterTake(ctx: Context): Promise<void> {
  if (!ctx.config.history.enabled) return;
  try {
    ctx.log.info('daemon: history retention');
    await runHistoryPrune(ctx, { replicate: ctx.config.history.targets.length > 0 });
  } catch (err) {
    const msg =
      err instanceof ZshieldError && err.hint ? `${err.message} (${err.hint})` : (err as Error).message;
    ctx.log.error(`daemon: history retention failed: ${msg}; tried again after the next daily backup`);
  }
}

/** The forgotten snapshots in the catalog; the last entry carries the repository's files after the prune. */
function recordForgotten(ctx: Context, key: SigningKey, forgotten: readonly string[]): void {
  const h = ctx.config.history;
  const time = ctx.clock.now().toISOString();
  appendCatalog(
    ctx.writes,
    h.dir,
    key,
    forgotten.map((fingerprint, i) => ({
      kind: 'forgotten' as const,
      fingerprint,
      time,
      // The repository after the prune, once (restic repacked its files).
      ...(i === forgotten.length - 1 ? { files: repoFilesRecord(h.dir, repoDir(h), key.publicText) } : {}),
    })),
  );
}
