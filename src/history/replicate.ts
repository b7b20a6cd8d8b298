import path from 'node:path';
import { type HistoryConfig, type SftpTargetConfig, historyTargetsNamed } from '../config/history.js';
import type { Context } from '../context.js';
import { ConfigError, RemoteError, VerifyError, ZshieldError } from '../errors.js';
import { formatBytes, RateLimiter } from '../remote/transfer.js';
import { acquireLock, type LockHandle } from '../system/lock.js';
import { appendCatalog, CATALOG_FILES, catalogView, verifyCatalog } from './catalog.js';
import { catalogKey, repoDir, resticFor } from './repo.js';
import { SftpStore } from './sftp-store.js';
import { updateTarget } from './state.js';
import {
  expectedHash,
  type FileKind,
  kindOf,
  listLocalRepo,
  type RepoFile,
  type Store,
  sha256File,
  snapshotIdsIn,
} from './store.js';

/**
 * Progressive replication (the seed's ventiprog): each target gets what it lacks, in an order that
 * keeps it a working repository at every moment. New files first, data before the index that
 * points into it before the snapshots that point into the index, so a target never lists a
 * snapshot whose data is missing. Files the local repository no longer has (after a prune) go
 * last and the other way round: snapshots, then index, then data, so the new index is in place
 * before the old one and its packs leave. An interrupted run resumes: present files are skipped
 * and a partial upload continues from its size.
 */

const UPLOAD_ORDER: FileKind[] = ['config', 'keys', 'data', 'index', 'snapshots'];
const DELETE_ORDER: FileKind[] = ['snapshots', 'index', 'data', 'keys'];

export interface ReplicationPlan {
  uploads: RepoFile[];
  deletes: RepoFile[];
  present: RepoFile[];
  bytesBehind: number;
}

/** Pure: what a target must receive and lose to equal the local repository, in order. */
export function planReplication(local: readonly RepoFile[], remote: readonly RepoFile[]): ReplicationPlan {
  const there = new Map(remote.map((f) => [f.name, f.size]));
  const here = new Set(local.map((f) => f.name));
  const rank = (order: FileKind[]) => (f: RepoFile) => order.indexOf(kindOf(f.name)!);
  const byOrder = (order: FileKind[]) => (a: RepoFile, b: RepoFile) =>
    rank(order)(a) - rank(order)(b) || a.name.localeCompare(b.name);
  // A file there with another size is not this file (a damaged or foreign copy): send it again.
  const uploads = local.filter((f) => there.get(f.name) !== f.size).sort(byOrder(UPLOAD_ORDER));
  const present = local.filter((f) => there.get(f.name) === f.size);
  const deletes = remote.filter((f) => !here.has(f.name) && f.name !== 'config').sort(byOrder(DELETE_ORDER));
  return { uploads, deletes, present, bytesBehind: uploads.reduce((n, f) => n + f.size, 0) };
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

export async function runReplicate(ctx: Context, opts: ReplicateOptions = {}): Promise<TargetReport[]> {
  const h = ctx.config.history;
  const targets = selectTargets(h, opts.only);
  const lock = await historyLock(ctx, 'history replicate');
  try {
    return await replicateLocked(ctx, targets, opts);
  } finally {
    await lock.release();
  }
}

/** The body of a replication, for callers that already hold the history lock (take, prune). */
export async function replicateLocked(
  ctx: Context,
  targets: readonly SftpTargetConfig[],
  opts: ReplicateOptions = {},
): Promise<TargetReport[]> {
  const h = ctx.config.history;
  const restic = resticFor(ctx);
  const times = new Map((await restic.snapshots()).map((s) => [s.id, s.time]));
  const local = listLocalRepo(repoDir(h));
  const key = await catalogKey(ctx);
  const reports: TargetReport[] = [];
  for (const t of targets) {
    if (ctx.signal.aborted) break;
    const started = ctx.clock.now().toISOString();
    updateTarget(ctx.writes, h.dir, t.name, (s) => {
      s.lastAttempt = started;
    });
    let store: Store | null = null;
    try {
      store = new SftpStore(
        ctx,
        h,
        t,
        opts.bandwidthKiBps ? new RateLimiter(opts.bandwidthKiBps * 1024) : null,
      );
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
      for (const name of CATALOG_FILES) await store.putCatalog(path.join(h.dir, name), name);
      updateTarget(ctx.writes, h.dir, t.name, (s) => {
        s.snapshots = snapshotIdsIn(local);
        s.newest = r.newest;
        s.bytesBehind = 0;
        s.lastSent = r.sent;
        s.lastSuccess = now;
        s.lastError = r.repaired.length ? `repaired ${r.repaired.length} damaged file(s) at ${now}` : null;
      });
      reports.push(r);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      const msg = err instanceof ZshieldError ? err.message : String((err as Error)?.message ?? err);
      ctx.log.error(`history: target ${t.name}: ${msg}`);
      updateTarget(ctx.writes, h.dir, t.name, (s) => {
        s.lastError = `${ctx.clock.now().toISOString()}: ${msg}`;
      });
      reports.push({ ...emptyReport(t.name), error: msg });
    } finally {
      store?.close();
    }
  }
  printReports(ctx, reports);
  const failed = reports.filter((r) => !r.ok);
  if (failed.length) {
    throw new RemoteError(
      `history: ${failed.length} of ${reports.length} target(s) not replicated: ${failed.map((r) => `${r.target}: ${r.error}`).join('; ')}`,
      { hint: 'the others were; the next run resumes where this one stopped (zshield history status)' },
    );
  }
  return reports;
}

function emptyReport(target: string): TargetReport {
  return {
    target,
    ok: false,
    uploaded: 0,
    sent: 0,
    resumed: 0,
    deleted: 0,
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
  const plan = planReplication(local, await store.list());
  updateTarget(ctx.writes, h.dir, name, (s) => {
    s.bytesBehind = plan.bytesBehind;
  });
  ctx.log.info(
    `history: ${store.label}: ${plan.uploads.length} file(s) to send (${formatBytes(plan.bytesBehind)}), ${plan.deletes.length} to remove, ${plan.present.length} already there`,
  );
  const report = emptyReport(name);
  let behind = plan.bytesBehind;
  for (const f of plan.uploads) {
    const r = await store.put(path.join(repo, ...f.name.split('/')), f);
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
  }
  for (const f of plan.deletes) {
    await store.remove(f.name);
    report.deleted++;
  }
  const state = updateTarget(ctx.writes, h.dir, name, () => {});
  const share = opts.verifyAll
    ? { files: plan.present, next: 0 }
    : verificationShare(plan.present, h.verifyPercent, state.verifyCursor);
  report.repaired = await verifyFiles(ctx, store, repo, share.files, true);
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
  for (const f of files) {
    if (ctx.signal.aborted) break;
    const local = path.join(repo, ...f.name.split('/'));
    const want = expectedHash(f.name) ?? (await sha256File(local));
    const got = await store.sha256(f);
    if (got === want) continue;
    damaged.push(f.name);
    ctx.log.error(`history: ${store.label}: ${f.name} is damaged (SHA-256 ${got})`);
    if (repair) {
      await store.remove(f.name);
      await store.put(local, f);
      ctx.log.warn(`history: ${store.label}: ${f.name} sent again from the local repository`);
    }
  }
  return damaged;
}

export interface VerifyReport {
  target: string;
  checked: number;
  damaged: string[];
  missing: number;
  error: string | null;
}

/** `history verify`: check the targets' files by hash, repairing nothing. Any fault: VerifyError. */
export async function runTargetVerify(
  ctx: Context,
  opts: { only?: string[]; all?: boolean },
): Promise<VerifyReport[]> {
  const h = ctx.config.history;
  const targets = selectTargets(h, opts.only);
  const local = listLocalRepo(repoDir(h));
  const out: VerifyReport[] = [];
  for (const t of targets) {
    const store = new SftpStore(ctx, h, t);
    try {
      const plan = planReplication(local, await store.list());
      const state = updateTarget(ctx.writes, h.dir, t.name, () => {});
      const share = opts.all
        ? { files: plan.present, next: 0 }
        : verificationShare(plan.present, h.verifyPercent, state.verifyCursor);
      const damaged = await verifyFiles(ctx, store, repoDir(h), share.files, false);
      if (!damaged.length)
        updateTarget(ctx.writes, h.dir, t.name, (s) => {
          s.verifyCursor = share.next;
          s.lastVerified = ctx.clock.now().toISOString();
        });
      out.push({
        target: t.name,
        checked: share.files.length,
        damaged,
        missing: plan.uploads.length,
        error: null,
      });
    } catch (err) {
      out.push({ target: t.name, checked: 0, damaged: [], missing: 0, error: (err as Error).message });
    } finally {
      store.close();
    }
  }
  for (const r of out)
    ctx.out.print(
      r.error
        ? `  ${r.target}: not checked: ${r.error}`
        : `  ${r.target}: ${r.checked} file(s) checked, ${r.damaged.length} damaged${r.damaged.length ? ` (${r.damaged.join(', ')})` : ''}, ${r.missing} missing`,
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

export function selectTargets(h: HistoryConfig, only?: readonly string[]): SftpTargetConfig[] {
  if (!h.targets.length)
    throw new ConfigError([{ where: 'history.targets', message: 'no target is configured' }], {
      hint: 'add one: {"name": "site-a", "server": ..., "user": ..., "hostKey": ..., "directory": ...}',
    });
  if (!only?.length) return h.targets;
  historyTargetsNamed(h, only);
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
      `  ${r.target}: ${r.uploaded} file(s) sent (${formatBytes(r.sent)}${r.resumed ? `, ${r.resumed} resumed` : ''}), ${r.deleted} removed, ${r.verified} verified${r.repaired.length ? `, ${r.repaired.length} damaged and sent again` : ''}; newest ${r.newest ?? 'none'}`,
    );
  }
}
