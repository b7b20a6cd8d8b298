import type { CatalogEntry, RepoFile } from '../history/index.js';
import { catalogFiles } from '../history/index.js';
import { VerifyError } from '../errors.js';

/**
 * Which of a box's files on an append-only target the vendor's prune removes (no I/O here): those
 * the box's verified catalog once recorded and its newest record no longer lists, that is what a
 * prune on the box removed from its repository and its replication could not remove there. A
 * file no record ever listed is left: the box may be replicating right now (its new files reach
 * the target before the catalog that lists them), or it is not the box's. `config` is never
 * removed (a repository is gone without it), nor anything outside the repository (the catalog).
 */

/** The order deletes go in, as replication's (replicate.ts): what names a file leaves before it. */
export const PRUNE_ORDER = ['snapshots', 'index', 'data', 'keys'] as const;
export type PruneKind = (typeof PRUNE_ORDER)[number];

export interface PruneSelection {
  /** To remove, in PRUNE_ORDER (then by name). */
  remove: RepoFile[];
  /** Held there and listed by the newest record. */
  kept: number;
  /** Held there, listed by no record: left (in flight from the box, or not its own). */
  unknown: RepoFile[];
  /** Files the newest record lists. */
  listed: number;
}

const kindOf = (name: string): PruneKind | null => {
  const top = name.split('/')[0] as PruneKind;
  return name.includes('/') && PRUNE_ORDER.includes(top) ? top : null;
};

/**
 * Throws VerifyError (nothing removed) when the catalog's records do not give the whole list, or
 * when the selection would take a snapshot file of a backup the catalog has not forgotten.
 */
export function selectPrune(entries: readonly CatalogEntry[], held: readonly RepoFile[]): PruneSelection {
  const replay = catalogFiles(entries);
  if (!replay.complete)
    throw new VerifyError(
      replay.records === 0
        ? "the box's catalog records no file list (made by an older zshield): what its repository holds cannot be told"
        : "the box's catalog records do not add up to the list its newest record names (count or digest)",
      { hint: 'the box records its list at its next backup (zshield history take); nothing was removed' },
    );
  const ever = new Set<string>();
  for (const e of entries) if (e.kind !== 'replicated' && e.files) for (const n of e.files.add) ever.add(n);
  const forgotten = new Set(entries.filter((e) => e.kind === 'forgotten').map((e) => e.fingerprint));
  const live = new Set(
    entries
      .filter((e) => e.kind === 'backup' && !forgotten.has(e.fingerprint))
      .map((e) => `snapshots/${e.fingerprint}`),
  );
  const remove: RepoFile[] = [];
  const unknown: RepoFile[] = [];
  let kept = 0;
  for (const f of held) {
    if (replay.files.has(f.name)) kept++;
    else if (f.name === 'config' || kindOf(f.name) === null || !ever.has(f.name)) unknown.push(f);
    else remove.push(f);
  }
  const contradiction = remove.filter((f) => live.has(f.name)).map((f) => f.name);
  if (contradiction.length)
    throw new VerifyError(
      `the box's newest file list drops the snapshot of a backup its catalog has not forgotten: ${contradiction.join(', ')}`,
      { hint: 'a catalog that contradicts itself is not pruned by; nothing was removed' },
    );
  const rank = (f: RepoFile) => PRUNE_ORDER.indexOf(kindOf(f.name)!);
  remove.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  unknown.sort((a, b) => a.name.localeCompare(b.name));
  return { remove, kept, unknown, listed: replay.files.size };
}

/** The files to remove, by kind, in PRUNE_ORDER (kinds without any left out). */
export function byKind(files: readonly RepoFile[]): { kind: PruneKind; files: RepoFile[] }[] {
  return PRUNE_ORDER.map((kind) => ({ kind, files: files.filter((f) => kindOf(f.name) === kind) })).filter(
    (g) => g.files.length > 0,
  );
}
