import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { historyTargetsNamed } from '../config/history.js';
import type { Context } from '../context.js';
import { NotFoundError, RefusedError, UsageError, VerifyError } from '../errors.js';
import type { Plan } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { type CatalogView, catalogView, verifyCatalog } from './catalog.js';
import { repoDir, repositoryPassword, resticFor } from './repo.js';
import { planReplication } from './replication-plan.js';
import { readState } from './state.js';
import { FINGERPRINT, type Restic, RepositoryPasswordError } from './restic.js';
import { openStore } from './stores.js';
import {
  fetchRepository,
  kindOf,
  listLocalRepo,
  type RepoFile,
  type Store,
  snapshotIdsIn,
} from './repo-store.js';
import { formatBytes } from '../config/size.js';
import { catalogCheck, chooseCatalog } from './restore-catalog.js';

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
  if (!FINGERPRINT.test(id) && !SHORT_ID.test(id))
    throw new UsageError(
      `"${id}" is not a fingerprint (64 hex digits as history list prints them, or a unique prefix of 8 or more)`,
    );
  return id;
}

/** restic's short IDs: the first 8 hex digits (any unique prefix of 8 or more is taken). */
const SHORT_ID = /^[0-9a-f]{8,63}$/;

/**
 * The full fingerprint of `id`: itself, or the one fingerprint it begins (among the catalog's
 * backups, the local repository's snapshots, else the targets' when the box has neither).
 */
export async function resolveFingerprint(
  ctx: Context,
  id: string,
  opts: TreeRestoreOptions = {},
): Promise<string> {
  checkFingerprint(id);
  if (FINGERPRINT.test(id)) return id;
  const h = ctx.config.history;
  const known = new Set<string>();
  try {
    for (const v of catalogView(verifyCatalog(h.dir, h.publicKey).entries)) known.add(v.fingerprint);
  } catch {
    // no catalog here (a blank box): the repositories say
  }
  const snaps = path.join(repoDir(h), 'snapshots');
  if (existsSync(snaps)) for (const n of readdirSync(snaps)) if (FINGERPRINT.test(n)) known.add(n);
  let matches = [...known].filter((f) => f.startsWith(id));
  if (!matches.length)
    for (const t of h.targets) {
      if (opts.from && t.name !== opts.from) continue;
      const store = openStore(ctx, h, t);
      try {
        for (const f of snapshotIdsIn(await store.list())) known.add(f);
      } catch (err) {
        ctx.log.warn(`history: ${store.label}: ${(err as Error).message}`);
      } finally {
        store.close();
      }
      matches = [...known].filter((f) => f.startsWith(id));
      if (matches.length) break;
    }
  if (matches.length === 1) return matches[0]!;
  if (!matches.length)
    throw new NotFoundError(`no fingerprint begins with ${id}`, {
      hint: 'zshield history list shows the fingerprints',
    });
  throw new UsageError(`${id} is the beginning of ${matches.length} fingerprints: give more of it`, {
    hint: 'zshield history list shows the fingerprints',
  });
}

/**
 * Where the fingerprint comes from, fetched when it must be; the catalog checked first. A copy is
 * fetched in stages (repo-store.ts): config and keys, then the password is proven (`password`, else
 * history.password); index and snapshots, then every data file the index names must be on the
 * target (and, when this box has the repository, nothing it sent there may be gone); only then the
 * data. A wrong password or a target missing data stops before any data file is fetched.
 */
export async function openSource(
  ctx: Context,
  id: string,
  opts: TreeRestoreOptions,
  password?: string,
): Promise<RestoreSource> {
  const h = ctx.config.history;
  const localRepo = repoDir(h);
  const localHas = !opts.from && existsSync(path.join(localRepo, 'snapshots', id));
  if (localHas)
    return { from: 'local', repo: localRepo, temporary: null, entry: catalogCheck(ctx, h.dir, id, opts) };
  if (opts.from) historyTargetsNamed(h, [opts.from]);
  const work = mkdtempSync(path.join(workDir(ctx), 'fetch-'));
  const holders: { store: Store; name: string }[] = [];
  const failures: string[] = [];
  const damage: VerifyError[] = [];
  try {
    holders.push(...(await findHolders(ctx, id, opts, failures)));
    const { entry, order } = await chooseCatalog(ctx, holders, work, id, opts);
    const clear = order.length ? (password ?? repositoryPassword(ctx)) : '';
    for (const holder of order) {
      try {
        const repo = await fetchFrom(ctx, holder, work, clear, id);
        return { from: holder.name, repo, temporary: work, entry };
      } catch (err) {
        if (ctx.signal.aborted || opts.from || err instanceof RepositoryPasswordError) throw err;
        if (err instanceof VerifyError) damage.push(err);
        failures.push(`${holder.name}: ${(err as Error).message}`);
        ctx.log.warn(`history: ${holder.store.label}: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    rmSync(work, { recursive: true, force: true });
    throw err;
  } finally {
    for (const x of holders) x.store.close();
  }
  rmSync(work, { recursive: true, force: true });
  // Every target that holds it is damaged: that is the error (exit 10), not "not found".
  if (damage.length && damage.length === holders.length)
    throw new VerifyError(
      `fingerprint ${id}: every target that holds it is damaged: ${failures.join('; ')}`,
      damage[0]!.hint ? { hint: damage[0]!.hint } : undefined,
    );
  throw new NotFoundError(
    `fingerprint ${id} is in neither the local repository nor ${opts.from ? `target ${opts.from}` : 'any reachable target'}${failures.length ? ` (${failures.join('; ')})` : ''}`,
    { hint: 'zshield history list shows the fingerprints; zshield history status, the targets' },
  );
}

/**
 * The targets (all, or the one named by --from) whose listing holds the fingerprint, each with its
 * store open; a target that cannot be listed is a failure told (thrown with --from).
 */
async function findHolders(
  ctx: Context,
  id: string,
  opts: TreeRestoreOptions,
  failures: string[],
): Promise<{ store: Store; name: string }[]> {
  const h = ctx.config.history;
  const holders: { store: Store; name: string }[] = [];
  for (const t of h.targets) {
    if (opts.from && t.name !== opts.from) continue;
    const store = openStore(ctx, h, t);
    try {
      if (snapshotIdsIn(await store.list()).includes(id)) {
        holders.push({ store, name: t.name });
        continue;
      }
      ctx.log.info(`history: ${store.label} does not hold ${id}`);
    } catch (err) {
      const fatal = ctx.signal.aborted || opts.from;
      if (!ctx.signal.aborted) {
        failures.push(`${t.name}: ${(err as Error).message}`);
        ctx.log.warn(`history: ${store.label}: ${(err as Error).message}`);
      }
      if (fatal) {
        // The caller never sees the holders found so far: they are closed here.
        for (const x of [...holders.map((x) => x.store), store]) x.close();
        throw err;
      }
    }
    store.close();
  }
  return holders;
}

/**
 * One target's copy fetched into WORK/repo in stages: config and keys (then the password is
 * proven), index and snapshots (then every data file the index names must be there), the data.
 */
async function fetchFrom(
  ctx: Context,
  holder: { store: Store; name: string },
  work: string,
  clear: string,
  id: string,
): Promise<string> {
  const store = holder.store;
  const repo = path.join(work, 'repo');
  rmSync(repo, { recursive: true, force: true });
  ctx.out.print(`history: fetching the repository from ${store.label} into ${repo}`);
  const restic = resticFor(ctx, repo, clear);
  let last = 0;
  await fetchRepository(store, repo, {
    onFile: (done, total) => {
      const pct = Math.floor((done / Math.max(total, 1)) * 100);
      if (pct >= last + 10 || done === total) {
        last = pct;
        ctx.log.info(`history fetch: ${pct}% (${formatBytes(done)} of ${formatBytes(total)})`);
      }
    },
    afterKeys: async () => {
      await restic.open();
      ctx.log.info(
        `history: ${store.label}: the password opens its repository (config and keys fetched; no data yet)`,
      );
    },
    afterIndex: async (files) => {
      const missing = await missingOnTarget(ctx, restic, holder.name, files);
      if (missing.length)
        throw new VerifyError(
          `${store.label} lacks ${missing.length} file(s) of its repository: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
          {
            hint: `nothing was written; restore from another target (zshield history restore ${id} DIR --from OTHER), or run zshield history replicate on the box that made the backup: it sends missing files again`,
          },
        );
    },
  });
  return repo;
}

/**
 * What a target's copy lacks that a restore needs, found before its data is fetched: a data file
 * its own index names (restic would fail on it half-way through the tree), and, when this box has
 * the repository, a data or index file the last successful replication sent there (the damage
 * check of `history verify`).
 */
async function missingOnTarget(
  ctx: Context,
  restic: Restic,
  target: string,
  files: readonly RepoFile[],
): Promise<string[]> {
  const there = new Set(files.map((f) => f.name));
  const missing = new Map<string, string>();
  for (const pack of await restic.indexedPacks()) {
    const name = `data/${pack.slice(0, 2)}/${pack}`;
    if (!there.has(name)) missing.set(name, 'named by its index');
  }
  const local = repoDir(ctx.config.history);
  if (existsSync(path.join(local, 'config'))) {
    const since = readState(ctx.config.history.dir)[target]?.lastSuccess ?? null;
    for (const d of planReplication(listLocalRepo(local), files, since).damaged) {
      const kind = kindOf(d.file.name);
      if ((kind === 'data' || kind === 'index') && !there.has(d.file.name) && !missing.has(d.file.name))
        missing.set(d.file.name, d.why);
    }
  }
  return [...missing.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([n, why]) => `${n} (${why})`);
}

function workDir(ctx: Context): string {
  // The fetched copy is as large as the repository: beside it, not on the run directory's tmpfs.
  const dir = path.join(ctx.config.history.dir, 'work');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
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
  // The size (for the progress and the summary) is asked beside the restore, not before it: both
  // only read the repository, and the query's own start (restic loading the index) would otherwise
  // come on top of the restore's.
  let size: { bytes: number; files: number } | null = null;
  const sizing = restic.restoreSize(id).then((s) => {
    size = s;
    return s;
  });
  sizing.catch(() => {}); // awaited below; not unhandled meanwhile
  const used = () => {
    const s = statfsSync(target);
    return (s.blocks - s.bfree) * s.bsize;
  };
  const start = used();
  const timer = setInterval(() => {
    const done = Math.max(0, used() - start);
    const total: { bytes: number } | null = size;
    ctx.log.info(
      total
        ? `history restore: ${Math.min(99, Math.floor((done / Math.max(total.bytes, 1)) * 100))}% (${formatBytes(done)} of ${formatBytes(total.bytes)})`
        : `history restore: ${formatBytes(done)} written`,
    );
  }, 2000);
  try {
    await restic.restore(id, target);
  } finally {
    clearInterval(timer);
  }
  const done = await sizing;
  ctx.log.info(`history restore: 100% (${done.files} files, ${formatBytes(done.bytes)})`);
  return done;
}

/** `history restore ID DIR`: the tree of a fingerprint into a directory. */
export async function runTreeRestore(
  ctx: Context,
  id: string,
  target: string,
  opts: TreeRestoreOptions,
): Promise<void> {
  id = await resolveFingerprint(ctx, id, opts);
  const plan: Plan = {
    title: `Restore the tree of ${id} into ${target}`,
    notes: [
      'from the local repository, else fetched from the first target that holds it, its catalog checked first',
    ],
    checks: [
      ...(opts.from
        ? [
            {
              title: `${opts.from} is a history target`,
              run: () => {
                historyTargetsNamed(ctx.config.history, [opts.from!]);
              },
            },
          ]
        : []),
      {
        title: `${target} is an empty directory or does not exist yet`,
        run: () => {
          if (existsSync(target) && readdirSync(target).some((n) => n !== 'lost+found'))
            throw new RefusedError(`${target} is not empty: a restore writes into an empty directory only`);
        },
      },
    ],
    steps: [
      {
        title: `find ${id} (local repository or a target), check it against the catalog, restore it (restic restore)`,
        edit: { files: [target], apply: () => restoreFromSource(ctx, id, target, opts) },
      },
    ],
  };
  await runPlan(ctx, plan, { confirm: 'none' });
}

async function restoreFromSource(ctx: Context, id: string, target: string, opts: TreeRestoreOptions) {
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
