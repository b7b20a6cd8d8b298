import path from 'node:path';
import { type TargetConfig, targetWhere } from '../config/history.js';
import type { Context } from '../context.js';
import { InterruptedError, ZshieldError } from '../errors.js';
import { RateLimiter } from '../ssh/progress.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import type { SigningKey } from '../system/signing.js';
import { appendCatalog, CATALOG_FILES, catalogView, verifyCatalog } from './catalog.js';
import { provePassword } from './password-proof.js';
import { catalogKey, repoDir, repositoryPassword, resticFor } from './repo.js';
import { openStore } from './stores.js';
import { updateTarget } from './state.js';
import { kindOf, listLocalRepo, type RepoFile, type Store, snapshotIdsIn } from './repo-store.js';
import { formatBytes } from '../config/size.js';
import { FILES_IN_FLIGHT, inKindOrder } from './kind-order.js';
import { planReplication, verificationShare } from './replication-plan.js';
import { historyLock, selectTargets } from './target-select.js';
import { verifyFiles } from './verify-targets.js';
import { emptyReport, finishReplication, previewTargets, type TargetReport } from './replicate-report.js';

/**
 * Progressive replication: each target gets what it lacks, in an order that
 * keeps it a working repository at every moment. New files first, data before the index that
 * points into it before the snapshots that point into the index, so a target never lists a
 * snapshot whose data is missing. Files the local repository no longer has (after a prune) go
 * last and the other way round: snapshots, then index, then data, so the new index is in place
 * before the old one and its packs leave. An interrupted run resumes: present files are skipped
 * and a partial upload continues from its size.
 */

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
  const password = repositoryPassword(ctx);
  const restic = resticFor(ctx, repoDir(h), password);
  if (!ctx.dryRun) await restic.unlockStale();
  // The password is proven (a wrong one is a config error, whatever the copy needs) by opening the
  // key only, once for a password and the keys it opened (password-proof.ts); the snapshots' times
  // come from the signed catalog. `restic snapshots` did both and also took and dropped a lock in
  // the repository: 0.72 s against 0.48 s for a small repository.
  await provePassword(ctx, { dir: h.dir, repo: repoDir(h), password }, () => restic.open());
  const views = catalogView(catalog.entries);
  const times = new Map(views.map((v) => [v.fingerprint, v.time]));
  const cataloged = new Set(times.keys());
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
    // Each target's files go at once (the first step starts them all); each step then waits for
    // its own and does its catalog part, in order.
    steps: targets.map((t, i) => ({
      title: `give ${t.name} what it lacks, then check ${checkShare} by hash`,
      edit: {
        files: [`${targetWhere(t)}/repo`, `${targetWhere(t)}/catalog`],
        apply: async () => {
          reports.push(await runs.finish(i));
        },
      },
    })),
  };
  const runs = new TargetRuns(
    targets,
    targetParts(ctx, () => prep!, opts),
  );
  const lock = await historyLock(ctx, 'history replicate');
  try {
    const run = await runPlan(ctx, plan, { confirm: 'none', show: 'out' });
    if (!run.applied) return await previewTargets(ctx, prep!.local, targets);
  } finally {
    await runs.close();
    await lock.release();
  }
  finishReplication(ctx, reports);
  return reports;
}

/** The body of a replication, for callers that already hold the history lock (take, prune). */
export async function replicateLocked(
  ctx: Context,
  targets: readonly TargetConfig[],
  opts: ReplicateOptions = {},
): Promise<TargetReport[]> {
  const prep = await prepare(ctx);
  const runs = new TargetRuns(
    targets,
    targetParts(ctx, () => prep, opts),
  );
  const reports: TargetReport[] = [];
  try {
    for (let i = 0; i < targets.length && !ctx.signal.aborted; i++) reports.push(await runs.finish(i));
  } finally {
    await runs.close();
  }
  finishReplication(ctx, reports);
  return reports;
}

/** What sending one target's files came to; its store stays open for the catalog part. */
export interface FilesOutcome {
  t: TargetConfig;
  store: Store | null;
  report?: TargetReport;
  error?: unknown;
}

/**
 * The targets of one replication side by side: every target's files are sent at once, each on its
 * own store, as soon as the first is asked for; the catalog part (the entries appended to the local
 * catalog, the catalog put there, the state) is done one target at a time, in order, so the local
 * catalog has one writer. A target's failure is its report, not a throw (an abort is thrown).
 */
export class TargetRuns {
  private started: Promise<FilesOutcome>[] | null = null;
  constructor(
    private readonly targets: readonly TargetConfig[],
    private readonly parts: {
      send: (t: TargetConfig) => Promise<FilesOutcome>;
      finish: (o: FilesOutcome) => Promise<TargetReport>;
    },
  ) {}

  /** Target `i` replicated: its files (started with all the others'), then its catalog part. */
  async finish(i: number): Promise<TargetReport> {
    this.started ??= this.targets.map((t) => this.parts.send(t));
    return this.parts.finish(await this.started[i]!);
  }

  /** After a run that stopped early: what is still in flight ends and every store is closed. */
  async close(): Promise<void> {
    for (const o of await Promise.all(this.started ?? [])) {
      o.store?.close();
      o.store = null;
    }
  }
}

/** The parts of a replication's targets: the files sent, then the catalog part. */
function targetParts(ctx: Context, prep: () => Prepared, opts: ReplicateOptions) {
  return {
    send: (t: TargetConfig) => sendFiles(ctx, prep(), t, opts),
    finish: (o: FilesOutcome) => finishTarget(ctx, prep(), o),
  };
}

/** One target's files: sent, checked, damaged ones repaired. Never rejects: a failure is its outcome. */
async function sendFiles(
  ctx: Context,
  prep: Prepared,
  t: TargetConfig,
  opts: ReplicateOptions,
): Promise<FilesOutcome> {
  const h = ctx.config.history;
  const out: FilesOutcome = { t, store: null };
  // Everything inside the try: the sends of later targets are awaited only when their turn comes,
  // so none may reject meanwhile.
  try {
    updateTarget(ctx.writes, h.dir, t.name, (s) => {
      s.lastAttempt = ctx.clock.now().toISOString();
    });
    out.store = openStore(
      ctx,
      h,
      t,
      opts.bandwidthKiBps ? new RateLimiter(opts.bandwidthKiBps * 1024) : null,
    );
    out.report = await replicateOne(ctx, out.store, t.name, prep.local, prep.times, opts);
  } catch (err) {
    out.error = err;
  }
  return out;
}

/** One target's catalog entries, its catalog put there, its state; its store closed. */
async function finishTarget(ctx: Context, prep: Prepared, o: FilesOutcome): Promise<TargetReport> {
  const h = ctx.config.history;
  const { local, times, key } = prep;
  const t = o.t;
  try {
    if (o.error !== undefined) throw o.error;
    const r = o.report!;
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
    await putCatalogFiles(o.store!, h.dir);
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
    o.store?.close();
    o.store = null;
  }
}

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
