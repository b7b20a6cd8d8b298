import path from 'node:path';
import { type HistoryConfig, type TargetConfig, targetWhere } from '../config/history.js';
import type { Context } from '../context.js';
import {
  ConfigError,
  InterruptedError,
  NotFoundError,
  RemoteError,
  VerifyError,
  ZshieldError,
} from '../errors.js';
import { RateLimiter } from '../remote/index.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { acquireLock, type LockHandle } from '../system/lock.js';
import type { SigningKey } from '../system/signing.js';
import { appendCatalog, CATALOG_FILES, catalogView, verifyCatalog } from './catalog.js';
import { catalogKey, repoDir, resticFor } from './repo.js';
import { openStore } from './stores.js';
import { emptyTargetState, readState, stateFile, type TargetState, updateTarget } from './state.js';
import {
  expectedHash,
  type FileKind,
  kindOf,
  listLocalRepo,
  type RepoFile,
  type Store,
  sha256File,
  snapshotIdsIn,
} from './repo-store.js';
import { formatBytes } from '../config/size.js';

/**
 * Progressive replication: each target gets what it lacks, in an order that
 * keeps it a working repository at every moment. New files first, data before the index that
 * points into it before the snapshots that point into the index, so a target never lists a
 * snapshot whose data is missing. Files the local repository no longer has (after a prune) go
 * last and the other way round: snapshots, then index, then data, so the new index is in place
 * before the old one and its packs leave. An interrupted run resumes: present files are skipped
 * and a partial upload continues from its size.
 */

const UPLOAD_ORDER: FileKind[] = ['config', 'keys', 'data', 'index', 'snapshots'];
const DELETE_ORDER: FileKind[] = ['snapshots', 'index', 'data', 'keys'];

/**
 * Files in flight per target: one file's fixed costs (opening its part, the server's check, the
 * rename: round trips each) overlap the others' bytes.
 */
export const FILES_IN_FLIGHT = 4;

/**
 * Run `fn` over `files` (in kind order, as planReplication gives them), up to `limit` at a time,
 * across kinds: a file's bytes go up while those of the kind before are still in flight, but `fn`
 * calls `ready()` before the step that makes the file visible there (the rename of its verified
 * part; for a delete, the delete), and it resolves only once every file of the kinds before is
 * done. So no index is named on a target before every data file it points into, and no snapshot
 * before its index (the reverse in DELETE_ORDER). Files start in order, so whatever a file waits
 * for has started already: no wait can hold a slot another needs. On the first failure no further
 * file starts, `ready()` of the kinds after a failed file rejects (they are never named), the ones
 * in flight end, then the failure is thrown (a resumed run finds what they left).
 */
export async function inKindOrder(
  files: readonly RepoFile[],
  limit: number,
  fn: (f: RepoFile, ready: () => Promise<void>) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const kinds: FileKind[] = [];
  const left = new Map<FileKind, number>();
  for (const f of files) {
    const k = kindOf(f.name)!;
    if (!left.has(k)) kinds.push(k);
    left.set(k, (left.get(k) ?? 0) + 1);
  }
  const done = new Map(kinds.map((k) => [k, deferred()]));
  for (const d of done.values()) d.promise.catch(() => {});
  const readyFor = (k: FileKind) => {
    const before = kinds.slice(0, kinds.indexOf(k)).map((b) => done.get(b)!.promise);
    const all = Promise.all(before).then(() => {});
    return () => all;
  };
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < files.length && !signal?.aborted) {
      const f = files[next++]!;
      const k = kindOf(f.name)!;
      try {
        await fn(f, readyFor(k));
        const n = left.get(k)! - 1;
        left.set(k, n);
        if (n === 0) done.get(k)!.resolve();
      } catch (err) {
        failure ??= { err };
        done.get(k)!.reject(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, files.length)) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export interface ReplicationPlan {
  uploads: RepoFile[];
  deletes: RepoFile[];
  present: RepoFile[];
  bytesBehind: number;
  /**
   * Damage found by the listing alone: a same-named file of another size (a truncated or foreign
   * copy), or a file the target lacks though it was written here before the target's last
   * successful replication (which sent it: it was deleted there since). Both are among `uploads`.
   */
  damaged: { file: RepoFile; why: string }[];
}

/**
 * Pure: what a target must receive and lose to equal the local repository, in order. `since` is
 * the target's last successful replication: every local file older than it was sent then.
 */
export function planReplication(
  local: readonly RepoFile[],
  remote: readonly RepoFile[],
  since: string | null = null,
): ReplicationPlan {
  const there = new Map(remote.map((f) => [f.name, f.size]));
  const here = new Set(local.map((f) => f.name));
  const rank = (order: FileKind[]) => (f: RepoFile) => order.indexOf(kindOf(f.name)!);
  const byOrder = (order: FileKind[]) => (a: RepoFile, b: RepoFile) =>
    rank(order)(a) - rank(order)(b) || a.name.localeCompare(b.name);
  const uploads = local.filter((f) => there.get(f.name) !== f.size).sort(byOrder(UPLOAD_ORDER));
  const present = local.filter((f) => there.get(f.name) === f.size);
  const deletes = remote.filter((f) => !here.has(f.name) && f.name !== 'config').sort(byOrder(DELETE_ORDER));
  const sentBy = since === null ? Number.NEGATIVE_INFINITY : Date.parse(since);
  const damaged: ReplicationPlan['damaged'] = [];
  for (const f of uploads) {
    const size = there.get(f.name);
    if (size !== undefined) damaged.push({ file: f, why: `${size} bytes there, ${f.size} here` });
    else if (f.mtimeMs !== undefined && f.mtimeMs < sentBy)
      damaged.push({ file: f, why: 'missing, though the last successful replication sent it' });
  }
  return { uploads, deletes, present, bytesBehind: uploads.reduce((n, f) => n + f.size, 0), damaged };
}

/** The files of this run's rotating check: `percent` of them from the cursor on, wrapping. */
export function verificationShare(
  files: readonly RepoFile[],
  percent: number,
  cursor: number,
): { files: RepoFile[]; next: number } {
  if (files.length === 0 || percent <= 0) return { files: [], next: 0 };
  const n = Math.min(files.length, Math.ceil((files.length * percent) / 100));
  const start = cursor % files.length;
  const out = Array.from({ length: n }, (_, i) => files[(start + i) % files.length]!);
  return { files: out, next: (start + n) % files.length };
}

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

/**
 * Hash each file where it is stored and compare with the hash its name says (config: with the
 * local one). With `repair`, a damaged file is sent again from the local repository.
 */
async function verifyFiles(
  ctx: Context,
  store: Store,
  repo: string,
  files: readonly RepoFile[],
  repair: boolean,
): Promise<string[]> {
  const damaged: string[] = [];
  // Several at a time (one exec checks those asked together), a kind after the one before: a
  // repaired data file is named again before any index that points into it.
  await inKindOrder(
    files,
    store.filesInFlight ?? FILES_IN_FLIGHT,
    async (f, ready) => {
      const local = path.join(repo, ...f.name.split('/'));
      const [want, got] = await Promise.all([expectedHash(f.name) ?? sha256File(local), store.sha256(f)]);
      if (got === want) return;
      damaged.push(f.name);
      ctx.log.error(`history: ${store.label}: ${f.name} is damaged (SHA-256 ${got})`);
      if (repair) {
        await ready();
        if (!store.appendOnly) await store.remove(f.name);
        await store.put(local, f, { replace: true, ready });
        ctx.log.warn(`history: ${store.label}: ${f.name} sent again from the local repository`);
      }
    },
    ctx.signal,
  );
  // In the order of the files, whichever check ended first.
  return files.map((f) => f.name).filter((n) => damaged.includes(n));
}

export interface VerifyReport {
  target: string;
  checked: number;
  /** Files whose hash or size is wrong, or that were sent once and are gone: each with why. */
  damaged: string[];
  /** Files the target lacks that were never sent (written here since its last replication). */
  missing: number;
  /** Bytes the target lacks or holds wrongly (what `history status` shows as behind). */
  bytesBehind: number;
  error: string | null;
}

/**
 * `history verify`: check the targets' files by hash (reading only), then record where the
 * rotating check goes on and what each target lacks. Damage (a wrong hash or size, a file gone
 * that was sent): VerifyError, exit 10; a target unreachable: RemoteError.
 */
export async function runTargetVerify(
  ctx: Context,
  opts: { only?: string[]; all?: boolean },
): Promise<VerifyReport[]> {
  const h = ctx.config.history;
  const targets = selectTargets(h, opts.only);
  const out: VerifyReport[] = [];
  const cursors = new Map<string, number>();
  const plan: Plan = {
    title: `Verify ${opts.all ? 'every file' : `${h.verifyPercent}% of the files`} of ${targets.map((t) => t.name).join(', ')} by hash`,
    notes: ['reads only; damaged files are repaired by zshield history replicate --verify-all'],
    checks: [
      {
        title: "list each target and hash this run's share of its files",
        run: async () => {
          const local = listLocalRepo(repoDir(h));
          const state = readState(h.dir);
          for (const t of targets) {
            const r = await verifyTarget(
              ctx,
              t,
              local,
              state[t.name] ?? emptyTargetState(),
              Boolean(opts.all),
            );
            out.push(r.report);
            if (r.next !== null) cursors.set(t.name, r.next);
          }
        },
      },
    ],
    steps: [
      {
        title: "record each target's result (where the rotating check goes on, bytes behind)",
        edit: {
          files: [stateFile(h.dir)],
          apply: () => {
            const now = ctx.clock.now().toISOString();
            for (const r of out.filter((x) => x.error === null))
              updateTarget(ctx.writes, h.dir, r.target, (s) => {
                s.bytesBehind = r.bytesBehind;
                const next = cursors.get(r.target);
                if (next !== undefined) {
                  s.verifyCursor = next;
                  s.lastVerified = now;
                }
              });
          },
        },
      },
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none', show: 'none' });
  for (const r of out)
    ctx.out.print(
      r.error
        ? `  ${r.target}: not checked: ${r.error}`
        : `  ${r.target}: ${r.checked} file(s) checked, ${r.damaged.length} damaged${r.damaged.length ? ` (${r.damaged.join(', ')})` : ''}, ${r.missing} not yet sent; behind ${formatBytes(r.bytesBehind)}`,
    );
  const bad = out.filter((r) => r.damaged.length);
  if (bad.length)
    throw new VerifyError(
      `history: damaged files on ${bad.map((r) => `${r.target} (${r.damaged.length}: ${r.damaged[0]}${r.damaged.length > 1 ? ', …' : ''})`).join(', ')}`,
      { hint: 'zshield history replicate --verify-all sends them again from the local repository' },
    );
  const down = out.filter((r) => r.error);
  if (down.length) throw new RemoteError(`history: ${down.map((r) => `${r.target}: ${r.error}`).join('; ')}`);
  return out;
}

/**
 * The last line of a `history verify` that found no damage: how many files were checked and found
 * intact, and, counted per target, what is not there yet (written here since its last
 * replication): "intact" never stands for files nobody looked at.
 */
export function verifySummary(reports: readonly VerifyReport[]): string {
  const checked = reports.reduce((n, r) => n + r.checked, 0);
  const behind = reports.filter((r) => r.missing > 0);
  const on = `${reports.length} target(s)`;
  if (!behind.length)
    return `history: every file checked is intact (${checked} file(s) on ${on}); nothing left to send`;
  return `history: the ${checked} file(s) checked on ${on} are intact; not yet sent: ${behind
    .map((r) => `${r.target} lacks ${r.missing} file(s) (${formatBytes(r.bytesBehind)})`)
    .join(', ')}; zshield history replicate sends them`;
}

async function verifyTarget(
  ctx: Context,
  t: TargetConfig,
  local: readonly RepoFile[],
  state: TargetState,
  all: boolean,
): Promise<{ report: VerifyReport; next: number | null }> {
  const h = ctx.config.history;
  const store = openStore(ctx, h, t);
  try {
    const plan = planReplication(local, await store.list(), state.lastSuccess);
    const share = all
      ? { files: plan.present, next: 0 }
      : verificationShare(plan.present, h.verifyPercent, state.verifyCursor);
    const hashed = await verifyFiles(ctx, store, repoDir(h), share.files, false);
    for (const d of plan.damaged)
      ctx.log.error(`history: ${store.label}: ${d.file.name} is damaged (${d.why})`);
    const damaged = [
      ...plan.damaged.map((d) => `${d.file.name}: ${d.why}`),
      ...hashed.map((n) => `${n}: wrong SHA-256`),
    ];
    return {
      report: {
        target: t.name,
        checked: share.files.length + plan.damaged.length,
        damaged,
        missing: plan.uploads.length - plan.damaged.length,
        bytesBehind:
          plan.bytesBehind +
          share.files.filter((f) => hashed.includes(f.name)).reduce((n, f) => n + f.size, 0),
        error: null,
      },
      next: damaged.length ? null : share.next,
    };
  } catch (err) {
    return {
      report: {
        target: t.name,
        checked: 0,
        damaged: [],
        missing: 0,
        bytesBehind: 0,
        error: (err as Error).message,
      },
      next: null,
    };
  } finally {
    store.close();
  }
}

export function selectTargets(h: HistoryConfig, only?: readonly string[]): TargetConfig[] {
  if (!h.targets.length)
    throw new ConfigError([{ where: 'history.targets', message: 'no target is configured' }], {
      hint: 'zshield history target add NAME USER@HOST:DIR --key FILE sets one up',
    });
  if (!only?.length) return h.targets;
  const unknown = only.filter((n) => !h.targets.some((t) => t.name === n));
  if (unknown.length)
    throw new NotFoundError(`no history target named ${unknown.join(', ')}`, {
      hint: 'zshield history target list shows the targets',
    });
  return h.targets.filter((t) => only.includes(t.name));
}

/** One history job at a time: take, replicate and prune all write the repository or the targets. */
export function historyLock(ctx: Context, purpose: string): Promise<LockHandle> {
  return acquireLock('history', purpose, {
    runDir: ctx.config.paths.runDir,
    log: ctx.log,
    waitMs: 0,
    title: 'history',
    busy: (who) => `another history job is running: ${who}`,
    hint: 'wait for it to finish',
  });
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
