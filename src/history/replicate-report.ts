// What a replication tells: each target's report, the lines printed after a run (or a dry run's
// look at each target), and the error naming the targets that failed with the others' reports.
import type { TargetConfig } from '../config/history.js';
import { formatBytes } from '../config/size.js';
import type { Context } from '../context.js';
import { RemoteError, ZshieldError } from '../errors.js';
import type { RepoFile } from './repo-store.js';
import { planReplication } from './replication-plan.js';
import { readState } from './state.js';
import { openStore } from './stores.js';

export interface TargetReport {
  target: string;
  ok: boolean;
  uploaded: number;
  sent: number;
  resumed: number;
  deleted: number;
  /** Append-only target: files the local repository no longer has, left there (not deleted). */
  kept: number;
  verified: number;
  repaired: string[];
  newest: string | null;
  error: string | null;
}

export function emptyReport(target: string): TargetReport {
  return {
    target,
    ok: false,
    uploaded: 0,
    sent: 0,
    resumed: 0,
    deleted: 0,
    kept: 0,
    verified: 0,
    repaired: [],
    newest: null,
    error: null,
  };
}

export function finishReplication(ctx: Context, reports: readonly TargetReport[]): void {
  printReports(ctx, reports);
  const failed = reports.filter((r) => !r.ok);
  if (failed.length) {
    throw new RemoteError(
      `history: ${failed.length} of ${reports.length} target(s) not replicated: ${failed.map((r) => `${r.target}: ${r.error}`).join('; ')}`,
      {
        hint: 'the others were; the next run resumes where this one stopped (zshield history status)',
        // --json: each target's report goes with the error (what did succeed).
        result: reports,
      },
    );
  }
}

function printReports(ctx: Context, reports: readonly TargetReport[]): void {
  for (const r of reports) {
    if (!r.ok) {
      ctx.out.print(`  ${r.target}: FAILED: ${r.error}`);
      continue;
    }
    ctx.out.print(
      `  ${r.target}: ${r.uploaded} file(s) sent (${formatBytes(r.sent)}${r.resumed ? `, ${r.resumed} resumed` : ''}), ${r.deleted} removed${r.kept ? `, ${r.kept} left (append-only target: its prune credential removes them)` : ''}, ${r.verified} verified${r.repaired.length ? `, ${r.repaired.length} damaged and sent again` : ''}; newest ${r.newest ?? 'none'}`,
    );
  }
}

/**
 * A dry run's look at each target (listing only): what it would be sent, what is damaged there.
 * A target that cannot be reached fails the dry run as it would fail the run (exit 11).
 */
export async function previewTargets(
  ctx: Context,
  local: readonly RepoFile[],
  targets: readonly TargetConfig[],
): Promise<TargetReport[]> {
  const h = ctx.config.history;
  const state = readState(h.dir);
  const reports: TargetReport[] = [];
  for (const t of targets) {
    const store = openStore(ctx, h, t);
    try {
      const plan = planReplication(local, await store.list(), state[t.name]?.lastSuccess ?? null);
      ctx.out.print(
        `  ${t.name}: would send ${plan.uploads.length} file(s) (${formatBytes(plan.bytesBehind)}), remove ${plan.deletes.length}; ${plan.present.length} already there${plan.damaged.length ? `; ${plan.damaged.length} damaged: ${plan.damaged.map((d) => `${d.file.name} (${d.why})`).join(', ')}` : ''}`,
      );
      reports.push({
        ...emptyReport(t.name),
        ok: true,
        uploaded: plan.uploads.length,
        deleted: plan.deletes.length,
      });
    } catch (err) {
      const msg = err instanceof ZshieldError ? err.message : String((err as Error)?.message ?? err);
      ctx.out.print(`  ${t.name}: FAILED: ${msg}`);
      reports.push({ ...emptyReport(t.name), error: msg });
    } finally {
      store.close();
    }
  }
  const failed = reports.filter((r) => !r.ok);
  if (failed.length)
    throw new RemoteError(
      `history: ${failed.length} of ${reports.length} target(s) cannot be reached: ${failed.map((r) => `${r.target}: ${r.error}`).join('; ')}`,
      {
        hint: 'zshield history status shows each target; zshield history target add NAME USER@HOST:DIR sets one up',
      },
    );
  return reports;
}
