import type { Context } from '../context.js';
import { appendCatalog } from './catalog.js';
import { historyLock, replicateLocked, type TargetReport } from './replicate.js';
import { catalogKey, resticFor } from './repo.js';
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
  const restic = resticFor(ctx);
  const key = await catalogKey(ctx);
  const lock = await historyLock(ctx, 'history prune');
  try {
    const candidates = await restic.wouldForget(h.keep);
    const state = readState(h.dir);
    const report: PruneReport = { forgotten: [], keptForTargets: [], replication: [] };
    for (const id of candidates) {
      const missingOn = h.targets
        .filter((t) => !(state[t.name]?.snapshots ?? []).includes(id))
        .map((t) => t.name);
      if (missingOn.length) report.keptForTargets.push({ fingerprint: id, missingOn });
      else report.forgotten.push(id);
    }
    for (const k of report.keptForTargets)
      ctx.out.print(`  kept ${k.fingerprint}: not yet on ${k.missingOn.join(', ')}`);
    for (const id of report.forgotten) ctx.out.print(`  ${ctx.dryRun ? 'would forget' : 'forget'} ${id}`);
    if (ctx.dryRun) return report;
    if (report.forgotten.length) {
      await restic.forget(report.forgotten);
      await restic.prune();
      const time = ctx.clock.now().toISOString();
      appendCatalog(
        ctx.writes,
        h.dir,
        key,
        report.forgotten.map((fingerprint) => ({ kind: 'forgotten' as const, fingerprint, time })),
      );
      ctx.out.print(`history: ${report.forgotten.length} snapshot(s) forgotten and the repository pruned`);
    } else {
      ctx.out.print('history: nothing to forget. No changes.');
    }
    if (opts.replicate && h.targets.length) report.replication = await replicateLocked(ctx, h.targets);
    return report;
  } finally {
    await lock.release();
  }
}
