import path from 'node:path';
import { type TargetConfig, targetWhere } from '../config/history.js';
import type { Context } from '../context.js';
import { InterruptedError, RemoteError, ZshieldError } from '../errors.js';
import { RateLimiter } from '../ssh/progress.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import type { SigningKey } from '../system/signing.js';
import { appendCatalog, CATALOG_FILES, catalogView, verifyCatalog } from './catalog.js';
import { catalogKey, repoDir, resticFor } from './repo.js';
import { openStore } from './stores.js';
import { readState, updateTarget } from './state.js';
import { kindOf, listLocalRepo, type RepoFile, type Store, snapshotIdsIn } from './repo-store.js';
import { formatBytes } from '../config/size.js';
import { FILES_IN_FLIGHT, inKindOrder } from './kind-order.js';
import { planReplication, verificationShare } from './replication-plan.js';
import { historyLock, selectTargets } from './target-select.js';
import { verifyFiles } from './verify-targets.js';

/**
 * Progressive replication: each target gets what it lacks, in an order that
 * keeps it a working repository at every moment. New files first, data before the index that
 * points into it before the snapshots that point into the index, so a target never lists a
 * snapshot whose data is missing. Files the local repository no longer has (after a prune) go
 * last and the other way round: snapshots, then index, then data, so the new index is in place
 * before the old one and its packs leave. An interrupted run resumes: present files are skipped
 * and a partial upload continues from its size.
 */

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

export interface ReplicateOptions {
  /** Only these targets (names); default all. */
  only?: string[];
  verifyAll?: boolean;
  /** Upload cap in KiB/s (all targets share it, one at a time). */
  bandwidthKiBps?: number;
}

/** What every replication needs, checked before the first change (a dry run checks it too). */
interface Prepared {
  /** The local repository's files, less the snapshots the catalog does not list. */
  local: RepoFile[];
  times: Map<string, string>;
  key: SigningKey;
}

async function prepare(ctx: Context): Promise<Prepared> {
  const h = ctx.config.history;
  const key = await catalogKey(ctx);
  const catalog = verifyCatalog(h.dir, key.publicText);
  const restic = resticFor(ctx);
  if (!ctx.dryRun) await restic.unlockStale();
  const times = new Map((await restic.snapshots()).map((s) => [s.id, s.time]));
  const cataloged = new Set(catalogView(catalog.entries).map((v) => v.fingerprint));
  const local: RepoFile[] = [];
  for (const f of listLocalRepo(repoDir(h))) {
    const id = kindOf(f.name) === 'snapshots' ? f.name.slice('snapshots/'.length) : null;
    if (id !== null && !cataloged.has(id)) {
      // A snapshot the catalog never listed (a take cut between restic and the catalog, or made
      // by hand): a restore would refuse it, so no target gets it.
      ctx.log.warn(`history: snapshot ${id} is not in the catalog: not replicated`);
      continue;
    }
    local.push(f);
  }
  return { local, times, key };
}

export async function runReplicate(ctx: Context, opts: ReplicateOptions = {}): Promise<TargetReport[]> {
  const h = ctx.config.history;
  const targets = selectTargets(h, opts.only);
  let prep: Prepared | null = null;
  const reports: TargetReport[] = [];
  const checkShare = opts.verifyAll ? 'every file' : `${h.verifyPercent}% of its files`;
  const plan: Plan = {
    title: `Replicate the history (${repoDir(h)}) to ${targets.map((t) => t.name).join(', ')}`,
    notes: [
      'each target gets the files it lacks (data, then index, then snapshots), loses what the local repository no longer has, and gets the catalog',
      'only snapshots the catalog lists are sent',
    ],
    checks: [
      {
        title: 'the catalog verifies and the repository opens with history.password',
        run: async () => {
          prep = await prepare(ctx);
        },
      },
    ],
    steps: targets.map((t) => ({
      title: `give ${t.name} what it lacks, then check ${checkShare} by hash`,
      edit: {
        files: [`${targetWhere(t)}/repo`, `${targetWhere(t)}/catalog`],
        apply: async () => {
          reports.push(await replicateTarget(ctx, prep!, t, opts));
        },
      },
    })),
  };
  const lock = await historyLock(ctx, 'history replicate');
  try {
    const run = await runPlan(ctx, plan, { confirm: 'none', show: 'out' });
    if (!run.applied) return await previewTargets(ctx, prep!, targets);
  } finally {
    await lock.release();
  }
  finishReplication(ctx, reports);
  return reports;
}

/**
 * A dry run's look at each target (listing only): what it would be sent, what is damaged there.
 * A target that cannot be reached fails the dry run as it would fail the run (exit 11).
 */
async function previewTargets(
  ctx: Context,
  prep: Prepared,
  targets: readonly TargetConfig[],
): Promise<TargetReport[]> {
  const h = ctx.config.history;
  const state = readState(h.dir);
  const reports: TargetReport[] = [];
  for (const t of targets) {
    const store = openStore(ctx, h, t);
    try {
      const plan = planReplication(prep.local, await store.list(), state[t.name]?.lastSuccess ?? null);
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

/** The body of a replication, for callers that already hold the history lock (take, prune). */
export async function replicateLocked(
  ctx: Context,
  targets: readonly TargetConfig[],
  opts: ReplicateOptions = {},
): Promise<TargetReport[]> {
  const prep = await prepare(ctx);
  const reports: TargetReport[] = [];
  for (const t of targets) {
    if (ctx.signal.aborted) break;
    reports.push(await replicateTarget(ctx, prep, t, opts));
  }
  finishReplication(ctx, reports);
  return reports;
}

/** One target: its files, its catalog entries, its state. A failure is its report, not a throw. */
async function replicateTarget(
  ctx: Context,
  prep: Prepared,
  t: TargetConfig,
  opts: ReplicateOptions,
): Promise<TargetReport> {
  const h = ctx.config.history;
  const { local, times, key } = prep;
  const started = ctx.clock.now().toISOString();
  updateTarget(ctx.writes, h.dir, t.name, (s) => {
    s.lastAttempt = started;
  });
  let store: Store | null = null;
  try {
    store = openStore(ctx, h, t, opts.bandwidthKiBps ? new RateLimiter(opts.bandwidthKiBps * 1024) : null);
    const r = await replicateOne(ctx, store, t.name, local, times, opts);
    const cataloged = new Set(
      catalogView(verifyCatalog(h.dir, key.publicText).entries)
        .filter((v) => v.targets.includes(t.name))
        .map((v) => v.fingerprint),
    );
    const newlyThere = snapshotIdsIn(local).filter((id) => !cataloged.has(id) && times.has(id));
    const now = ctx.clock.now().toISOString();
    if (newlyThere.length)
      appendCatalog(
        ctx.writes,
        h.dir,
        key,
        newlyThere.map((fingerprint) => ({
          kind: 'replicated' as const,
          fingerprint,
          target: t.name,
          time: now,
        })),
      );
    await putCatalogFiles(store, h.dir);
    const given = verifyCatalog(h.dir, key.publicText).head.count;
    updateTarget(ctx.writes, h.dir, t.name, (s) => {
      s.catalogCount = given;
      s.snapshots = snapshotIdsIn(local);
      s.newest = r.newest;
      s.bytesBehind = 0;
      s.lastSent = r.sent;
      s.lastSuccess = now;
      s.lastError = r.repaired.length ? `repaired ${r.repaired.length} damaged file(s) at ${now}` : null;
    });
    return r;
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    // The hint goes with the message: a host key to trust, a password to set, named per target.
    const msg =
      err instanceof ZshieldError
        ? `${err.message}${err.hint ? ` (${err.hint})` : ''}`
        : String((err as Error)?.message ?? err);
    ctx.log.error(`history: target ${t.name}: ${msg}`);
    updateTarget(ctx.writes, h.dir, t.name, (s) => {
      s.lastError = `${ctx.clock.now().toISOString()}: ${msg}`;
    });
    return { ...emptyReport(t.name), error: msg };
  } finally {
    store?.close();
  }
}

/**
 * The catalog's files, sent side by side but named in CATALOG_FILES' order (the lines before the
 * signed head that counts them): one that fails leaves the ones after it unnamed.
 */
export async function putCatalogFiles(store: Store, dir: string): Promise<void> {
  let before: Promise<void> = Promise.resolve();
  const puts = CATALOG_FILES.map((name) => {
    const prior = before;
    const p = store.putCatalog(path.join(dir, name), name, () => prior);
    before = p;
    return p;
  });
  await Promise.all(puts);
}

function finishReplication(ctx: Context, reports: readonly TargetReport[]): void {
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

function emptyReport(target: string): TargetReport {
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

async function replicateOne(
  ctx: Context,
  store: Store,
  name: string,
  local: readonly RepoFile[],
  times: ReadonlyMap<string, string>,
  opts: ReplicateOptions,
): Promise<TargetReport> {
  const h = ctx.config.history;
  const repo = repoDir(h);
  const since = updateTarget(ctx.writes, h.dir, name, () => {}).lastSuccess;
  const plan = planReplication(local, await store.list(), since);
  updateTarget(ctx.writes, h.dir, name, (s) => {
    s.bytesBehind = plan.bytesBehind;
  });
  for (const d of plan.damaged)
    ctx.log.error(`history: ${store.label}: ${d.file.name} is damaged (${d.why}): sending it again`);
  ctx.log.info(
    `history: ${store.label}: ${plan.uploads.length} file(s) to send (${formatBytes(plan.bytesBehind)}), ${plan.deletes.length} to remove, ${plan.present.length} already there`,
  );
  const report = emptyReport(name);
  let behind = plan.bytesBehind;
  const damagedNames = new Set(plan.damaged.map((d) => d.file.name));
  if (!store.appendOnly) for (const name of damagedNames) await store.remove(name);
  await inKindOrder(
    plan.uploads,
    store.filesInFlight ?? FILES_IN_FLIGHT,
    async (f, ready) => {
      const r = await store.put(path.join(repo, ...f.name.split('/')), f, {
        replace: damagedNames.has(f.name),
        ready,
      });
      report.uploaded++;
      report.sent += r.sent;
      if (r.resumedFrom > 0) report.resumed++;
      behind -= f.size;
      if (report.uploaded % 50 === 0) {
        ctx.log.info(
          `history: ${name}: ${report.uploaded} of ${plan.uploads.length} file(s) sent, ${formatBytes(behind)} to go`,
        );
        updateTarget(ctx.writes, h.dir, name, (s) => {
          s.bytesBehind = behind;
        });
      }
    },
    ctx.signal,
  );
  if (ctx.signal.aborted) throw new InterruptedError('interrupted');
  if (store.appendOnly && plan.deletes.length) {
    // The box's key cannot delete there (that is the point): the vendor's prune credential does.
    report.kept = plan.deletes.length;
    ctx.log.warn(
      `history: ${store.label}: append-only: ${plan.deletes.length} file(s) the local repository no longer has are left there (${formatBytes(plan.deletes.reduce((n, f) => n + f.size, 0))}); the store's prune credential removes them`,
    );
  } else
    await inKindOrder(
      plan.deletes,
      store.filesInFlight ?? FILES_IN_FLIGHT,
      async (f, ready) => {
        await ready();
        await store.remove(f.name);
        report.deleted++;
      },
      ctx.signal,
    );
  const state = updateTarget(ctx.writes, h.dir, name, () => {});
  const share = opts.verifyAll
    ? { files: plan.present, next: 0 }
    : verificationShare(plan.present, h.verifyPercent, state.verifyCursor);
  report.repaired = [...damagedNames, ...(await verifyFiles(ctx, store, repo, share.files, true))];
  report.verified = share.files.length;
  updateTarget(ctx.writes, h.dir, name, (s) => {
    s.verifyCursor = share.next;
    s.lastVerified = ctx.clock.now().toISOString();
  });
  const ids = snapshotIdsIn(local).filter((id) => times.has(id));
  report.newest = ids.sort((a, b) => times.get(a)!.localeCompare(times.get(b)!)).at(-1) ?? null;
  report.ok = true;
  return report;
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
