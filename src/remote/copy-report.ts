// What a remote copy reports: the files copied and checked, its retention, and the lines it prints
// (the plan before, the summary after).
import { formatBytes } from '../config/size.js';
import type { Context } from '../context.js';
import type { Check, CopyPlan, RetentionPlan } from './copy-plan.js';

export interface CopiedFile {
  name: string;
  size: number;
  resumedFrom: number;
  sent: number;
  sha256: string;
  verifiedBy: string;
  /** It was there already with the right size, but not the right content. */
  replacedDiffering: boolean;
}

export interface CheckedFile {
  name: string;
  why: string;
  matches: boolean;
  localSha256: string;
  remoteSha256: string;
  by: string;
}

export interface CopyReport {
  target: string;
  limit: number;
  plan: CopyPlan;
  /** Files already on the remote to compare by SHA-256 this run, and why each. */
  checks: Check[];
  checked: CheckedFile[];
  copied: CopiedFile[];
  retention: RetentionPlan;
  deletedLocal: string[];
  deletedRemote: string[];
  dryRun: boolean;
  /** The changes as the plan runPlan showed (and, on a real run, ran). */
  planned?: Record<string, unknown>;
}

export function printPlan(
  ctx: Context,
  where: string,
  plan: CopyPlan,
  checks: readonly Check[],
  sources: readonly string[],
): void {
  ctx.out.print(`remote copy to ${where} (keeping ${plan.limit} of each kind)`);
  for (const u of plan.uploads) {
    const how =
      u.resumeFrom > 0 ? `resume at ${formatBytes(u.resumeFrom)}` : u.replaces !== null ? 'replace' : 'copy';
    const why = u.differs ? ', its remote copy differs' : '';
    ctx.out.print(
      `  ${ctx.dryRun ? 'would ' : ''}${how}: ${u.file.name} (${formatBytes(u.file.size)}${why})`,
    );
  }
  for (const c of checks)
    ctx.out.print(`  ${ctx.dryRun ? 'would ' : ''}check by SHA-256: ${c.file.name} (${c.why})`);
  if (plan.tooOld.length) {
    ctx.out.print(
      `  not copied: ${plan.tooOld.length} file(s) older than the newest ${plan.limit} backups of their kind`,
    );
  }
  if (plan.uploads.length === 0 && plan.present.length === 0 && plan.tooOld.length === 0) {
    ctx.out.print(`  nothing to copy: no backup files in ${sources.join(', ')}`);
  } else if (plan.uploads.length === 0) {
    ctx.out.print(`  nothing to copy: the remote has all ${plan.present.length} backup file(s)`);
  }
}

export function printRetention(ctx: Context, plan: RetentionPlan, dry: boolean): void {
  const verb = dry ? 'would delete' : 'deleted';
  for (const f of plan.deleteLocal) ctx.out.print(`  ${verb} local: ${f.path}`);
  for (const n of plan.deleteRemote) ctx.out.print(`  ${verb} remote: ${n}`);
  for (const k of plan.kept) ctx.out.print(`  kept ${k.where}: ${k.kind} ${k.stamp} (${k.reason})`);
}

export function printSummary(ctx: Context, r: CopyReport): void {
  const bytes = r.copied.reduce((n, c) => n + c.sent, 0);
  ctx.log.info(
    `remote copy done: ${r.copied.length} file(s) copied (${formatBytes(bytes)} sent), ${r.checked.length} checked, ${r.deletedLocal.length} local and ${r.deletedRemote.length} remote file(s) deleted by retention`,
  );
  const differed = r.checked.filter((c) => !c.matches).length;
  if (r.checked.length) {
    ctx.out.print(
      `checked ${r.checked.length} file(s) already on the remote by SHA-256: ${r.checked.length - differed} matched, ${differed} differed${differed ? ' and were copied again' : ''}`,
    );
  }
  if (r.copied.length) {
    ctx.out.print(`copied ${r.copied.length} file(s), ${formatBytes(bytes)} sent, each verified by SHA-256`);
  }
  printRetention(ctx, { ...r.retention, deleteLocal: [], deleteRemote: [] }, false);
  for (const p of r.deletedLocal) ctx.out.print(`  deleted local: ${p}`);
  for (const n of r.deletedRemote) ctx.out.print(`  deleted remote: ${n}`);
  if (!r.copied.length && !r.deletedLocal.length && !r.deletedRemote.length) ctx.out.print('No changes.');
}
