import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { RefusedError, VerifyError } from '../errors.js';
import {
  CATALOG_FILES,
  type CatalogView,
  catalogView,
  headFile,
  requireCataloged,
  verifyCatalog,
} from './catalog.js';
import { readSeenHead, writeSeenHead } from './state.js';
import type { Store } from './repo-store.js';

/**
 * Which catalog vouches for a fingerprint before a restore (tree-restore.ts): the local one, or the
 * newest of the targets' copies that verifies; a rollback below the head this box has seen refused.
 */

/** `--allow-uncataloged`: restore what no catalog lists (a repository copied by hand, a lost catalog). */
interface Uncataloged {
  allowUncataloged?: boolean;
}

export function catalogCheck(ctx: Context, dir: string, id: string, opts: Uncataloged): CatalogView | null {
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

/**
 * The catalog that vouches for the fingerprint: the local one when the box has one, else the
 * targets' copies, each verified. Their heads may disagree (a target replicated less recently, or
 * a copy rolled back to an older signed head): the newest valid one is used, the others named,
 * and one older than a head this box has seen is reported as a rollback. When every holder's copy
 * fails verification, that is the error (exit 10, each target and its fault), not "not found".
 * Returns the holders in the order to fetch from: the chosen catalog's target first.
 */
export async function chooseCatalog<T extends { store: Store; name: string }>(
  ctx: Context,
  holders: readonly T[],
  work: string,
  id: string,
  opts: Uncataloged,
): Promise<{ entry: CatalogView | null; order: T[] }> {
  const h = ctx.config.history;
  if (existsSync(headFile(h.dir)) || holders.length === 0)
    return { entry: holders.length ? catalogCheck(ctx, h.dir, id, opts) : null, order: [...holders] };
  const seen = readSeenHead(h.dir);
  const good: { holder: T; dir: string; count: number }[] = [];
  const bad: string[] = [];
  for (const holder of holders) {
    const dir = path.join(work, `catalog-${holder.name}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      for (const name of CATALOG_FILES) await holder.store.fetchCatalog(name, path.join(dir, name));
      const c = verifyCatalog(dir, h.publicKey);
      if (seen && c.head.count < seen.count) {
        bad.push(
          `${holder.name}: its catalog was rolled back (${c.head.count} entries; this box has seen ${seen.count})`,
        );
        continue;
      }
      good.push({ holder, dir, count: c.head.count });
    } catch (err) {
      if (err instanceof RefusedError) throw err;
      bad.push(`${holder.name}: ${(err as Error).message}`);
    }
  }
  for (const b of bad) ctx.log.error(`history: catalog on ${b}`);
  if (!good.length) {
    if (opts.allowUncataloged) {
      ctx.log.warn(`history: restoring ${id} with no catalog that verifies (--allow-uncataloged)`);
      return { entry: null, order: [...holders] };
    }
    throw new VerifyError(
      `the catalog fails verification on every target that holds ${id}: ${bad.join('; ')}`,
      {
        hint: 'a catalog that does not verify was changed by someone without the signing key: find out who before restoring (zshield catalog verify --file-dir DIR checks a copy); to restore anyway, knowingly: --allow-uncataloged',
      },
    );
  }
  good.sort((a, b) => b.count - a.count);
  const best = good[0]!;
  for (const g of good.slice(1))
    if (g.count < best.count)
      ctx.log.warn(
        `history: the catalog on ${g.holder.name} is older (${g.count} entries) than ${best.holder.name}'s (${best.count}): using ${best.holder.name}'s`,
      );
  const entry = catalogCheck(ctx, best.dir, id, opts);
  if (!ctx.dryRun && (!seen || best.count > seen.count)) writeSeenHead(ctx.writes, h.dir, best.count);
  const order = [best.holder, ...holders.filter((x) => x !== best.holder)];
  return { entry, order };
}
