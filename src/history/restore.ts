import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { historyTargetsNamed } from '../config/history.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import { formatBytes } from '../remote/transfer.js';
import {
  CATALOG_FILES,
  type CatalogView,
  catalogView,
  headFile,
  requireCataloged,
  verifyCatalog,
} from './catalog.js';
import { repoDir, resticFor } from './repo.js';
import { FINGERPRINT } from './restic.js';
import { SftpStore } from './sftp-store.js';
import { fetchRepository, type Store, snapshotIdsIn } from './store.js';

/**
 * A fingerprint's tree written into a directory: from the local repository when it holds the
 * fingerprint, else from the first target that does (its files fetched, each checked against its
 * hash, into a temporary local copy: restic never opens anything but a local repository). The
 * fingerprint must be in the catalog (checked against the pinned key), unless the operator says
 * otherwise knowingly with --allow-uncataloged.
 */

export interface RestoreSource {
  /** 'local' or the target's name. */
  from: string;
  repo: string;
  /** A temporary copy to remove afterwards. */
  temporary: string | null;
  entry: CatalogView | null;
}

export interface TreeRestoreOptions {
  /** Restore what the catalog does not list (a repository copied by hand, a lost catalog). */
  allowUncataloged?: boolean;
  /** Use this target even when the local repository has the fingerprint. */
  from?: string;
}

export function checkFingerprint(id: string): string {
  if (!FINGERPRINT.test(id))
    throw new UsageError(`"${id}" is not a fingerprint (64 hex digits, as history list prints)`);
  return id;
}

/** Where the fingerprint comes from, fetched when it must be; the catalog checked first. */
export async function openSource(ctx: Context, id: string, opts: TreeRestoreOptions): Promise<RestoreSource> {
  const h = ctx.config.history;
  const localRepo = repoDir(h);
  if (opts.from) historyTargetsNamed(h, [opts.from]);
  const localHas = !opts.from && existsSync(path.join(localRepo, 'snapshots', id));
  if (localHas)
    return { from: 'local', repo: localRepo, temporary: null, entry: catalogCheck(ctx, h.dir, id, opts) };
  const work = mkdtempSync(path.join(workDir(ctx), 'fetch-'));
  try {
    for (const t of h.targets) {
      if (opts.from && t.name !== opts.from) continue;
      const store = new SftpStore(ctx, h, t);
      try {
        const files = await store.list();
        if (!snapshotIdsIn(files).includes(id)) {
          ctx.log.info(`history: ${store.label} does not hold ${id}`);
          continue;
        }
        const entry = await catalogFromStore(ctx, store, work, id, opts);
        const repo = path.join(work, 'repo');
        ctx.out.print(`history: fetching the repository from ${store.label} into ${repo}`);
        let last = 0;
        await fetchRepository(store, repo, (done, total) => {
          const pct = Math.floor((done / Math.max(total, 1)) * 100);
          if (pct >= last + 10 || done === total) {
            last = pct;
            ctx.log.info(`history fetch: ${pct}% (${formatBytes(done)} of ${formatBytes(total)})`);
          }
        });
        return { from: t.name, repo, temporary: work, entry };
      } catch (err) {
        if (err instanceof RefusedError || ctx.signal.aborted) throw err;
        ctx.log.warn(`history: ${store.label}: ${(err as Error).message}`);
        if (opts.from) throw err;
      } finally {
        store.close();
      }
    }
  } catch (err) {
    rmSync(work, { recursive: true, force: true });
    throw err;
  }
  rmSync(work, { recursive: true, force: true });
  throw new NotFoundError(
    `fingerprint ${id} is in neither the local repository nor ${opts.from ? `target ${opts.from}` : 'any reachable target'}`,
    { hint: 'zshield history list shows the fingerprints; zshield history status, the targets' },
  );
}

function workDir(ctx: Context): string {
  // The fetched copy is as large as the repository: beside it, not on the run directory's tmpfs.
  const dir = path.join(ctx.config.history.dir, 'work');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function catalogCheck(ctx: Context, dir: string, id: string, opts: TreeRestoreOptions): CatalogView | null {
  if (opts.allowUncataloged) {
    ctx.log.warn(`history: restoring ${id} without checking the catalog (--allow-uncataloged)`);
    try {
      return (
        catalogView(verifyCatalog(dir, ctx.config.history.publicKey).entries).find(
          (v) => v.fingerprint === id,
        ) ?? null
      );
    } catch {
      return null;
    }
  }
  return requireCataloged(dir, ctx.config.history.publicKey, id);
}

/** The local catalog when there is one (a box), else the target's copy (a blank disk). */
async function catalogFromStore(
  ctx: Context,
  store: Store,
  work: string,
  id: string,
  opts: TreeRestoreOptions,
): Promise<CatalogView | null> {
  if (existsSync(headFile(ctx.config.history.dir)))
    return catalogCheck(ctx, ctx.config.history.dir, id, opts);
  const dir = path.join(work, 'catalog');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const name of CATALOG_FILES) await store.fetchCatalog(name, path.join(dir, name));
  return catalogCheck(ctx, dir, id, opts);
}

/**
 * `restic restore` into `target` (an empty directory), with progress: restic 0.14 prints none, so
 * the growth of the target's file system is compared with the snapshot's size every 2 s.
 */
export async function restoreTree(
  ctx: Context,
  source: RestoreSource,
  id: string,
  target: string,
): Promise<{ bytes: number; files: number }> {
  mkdirSync(target, { recursive: true, mode: 0o755 });
  if (readdirSync(target).some((n) => n !== 'lost+found'))
    throw new RefusedError(`${target} is not empty: a restore writes into an empty directory only`);
  const restic = resticFor(ctx, source.repo);
  const size = await restic.restoreSize(id);
  const used = () => {
    const s = statfsSync(target);
    return (s.blocks - s.bfree) * s.bsize;
  };
  const start = used();
  const timer = setInterval(() => {
    const done = Math.max(0, used() - start);
    ctx.log.info(
      `history restore: ${Math.min(99, Math.floor((done / Math.max(size.bytes, 1)) * 100))}% (${formatBytes(done)} of ${formatBytes(size.bytes)})`,
    );
  }, 2000);
  try {
    await restic.restore(id, target);
  } finally {
    clearInterval(timer);
  }
  ctx.log.info(`history restore: 100% (${size.files} files, ${formatBytes(size.bytes)})`);
  return size;
}

/** `history restore ID DIR`: the tree of a fingerprint into a directory. */
export async function runTreeRestore(
  ctx: Context,
  id: string,
  target: string,
  opts: TreeRestoreOptions,
): Promise<void> {
  checkFingerprint(id);
  if (ctx.dryRun) {
    ctx.out.print(
      `would restore ${id} into ${target} (from the local repository, or the first target that holds it)`,
    );
    return;
  }
  const source = await openSource(ctx, id, opts);
  try {
    const size = await restoreTree(ctx, source, id, target);
    ctx.out.print(
      `history: ${id} restored into ${target} from ${source.from} (${size.files} files, ${formatBytes(size.bytes)})${source.entry ? `; cataloged ${source.entry.time} on ${source.entry.host} (${source.entry.reason})` : ''}`,
    );
  } finally {
    if (source.temporary) rmSync(source.temporary, { recursive: true, force: true });
  }
}
