import type { CatalogEntry, CatalogHead, VerifiedCatalog } from '../history/index.js';
import { catalogFiles } from '../history/index.js';

/**
 * The judgement of one box from what was read of it (no I/O here): its catalog (verified against
 * its pinned key, or why not), the files the target holds for it, the head this machine last
 * verified for it. A box fails for a catalog that does not verify (or no pinned key), a head that
 * does not extend the one seen before (a rewritten history: a stolen box holds its own signing
 * key, so only the memory of an earlier head shows it), no backup newer than the maximum age, or a
 * file the catalog lists that the target lacks.
 */

export type ProblemKind = 'unreadable' | 'key' | 'catalog' | 'rewound' | 'stale' | 'missing';

export interface Problem {
  kind: ProblemKind;
  message: string;
}

/** The head last verified for a box, kept on this machine (state/fleet-heads.ts). */
export interface RememberedHead {
  count: number;
  last: string;
  verifiedAt: string;
}

export interface BoxFacts {
  box: string;
  /** The reading failed before anything could be judged (the target, its listing). */
  unreadable?: string;
  /** The pinned public key's text; null when the keys folder has none for this box. */
  publicKey: string | null;
  /** The verified catalog, or why it does not verify (no catalog there included). */
  catalog: { verified: VerifiedCatalog } | { error: string } | null;
  /** The repository files the target holds for the box (names and sizes). */
  files: readonly { name: string; size: number }[];
  /** Bytes of the catalog's own files there. */
  catalogBytes: number;
  remembered: RememberedHead | null;
}

export interface BoxResult {
  box: string;
  ok: boolean;
  problems: Problem[];
  /** The verified head (null when the catalog does not verify). */
  head: CatalogHead | null;
  newest: { fingerprint: string; time: string; ageHours: number } | null;
  /** Backups the catalog lists and has not forgotten. */
  backups: number;
  files: {
    /** The files the catalog's records list (null: this catalog records none: made by an older zshield). */
    listed: number | null;
    /** Files the target holds. */
    held: number;
    /** Missing files, the first few by name. */
    missing: string[];
    missingCount: number;
  };
  /** Bytes the box holds on the target (repository and catalog). */
  bytes: number;
}

const SHOW_MISSING = 5;

export function judgeBox(f: BoxFacts, now: Date, maxAgeHours: number): BoxResult {
  const held = new Set(f.files.map((x) => x.name));
  const result: BoxResult = {
    box: f.box,
    ok: false,
    problems: [],
    head: null,
    newest: null,
    backups: 0,
    files: { listed: null, held: held.size, missing: [], missingCount: 0 },
    bytes: f.files.reduce((n, x) => n + x.size, 0) + f.catalogBytes,
  };
  const problem = (kind: ProblemKind, message: string) => result.problems.push({ kind, message });
  if (f.unreadable !== undefined) {
    problem('unreadable', f.unreadable);
    return result;
  }
  if (f.publicKey === null) problem('key', 'no pinned public key for this box');
  else if (f.catalog === null) problem('catalog', 'no catalog on the target');
  else if ('error' in f.catalog) problem('catalog', `catalog does not verify: ${f.catalog.error}`);
  if (result.problems.length || f.catalog === null || 'error' in f.catalog) return result;

  const v = f.catalog.verified;
  result.head = v.head;
  if (f.remembered && !extendsHead(v, f.remembered))
    problem(
      'rewound',
      `catalog does not extend the head verified on ${f.remembered.verifiedAt} (${f.remembered.count} entries): its history was rewritten`,
    );

  const forgotten = new Set(v.entries.filter((e) => e.kind === 'forgotten').map((e) => e.fingerprint));
  const backups = v.entries.filter(
    (e): e is Extract<CatalogEntry, { kind: 'backup' }> =>
      e.kind === 'backup' && !forgotten.has(e.fingerprint),
  );
  result.backups = backups.length;
  const newest = backups.reduce<(typeof backups)[number] | null>(
    (a, b) => (a === null || Date.parse(b.time) >= Date.parse(a.time) ? b : a),
    null,
  );
  if (newest) {
    const ageHours = (now.getTime() - Date.parse(newest.time)) / 3_600_000;
    result.newest = { fingerprint: newest.fingerprint, time: newest.time, ageHours: round1(ageHours) };
    if (ageHours > maxAgeHours)
      problem('stale', `newest backup is ${round1(ageHours)} h old (more than ${maxAgeHours} h)`);
  } else problem('stale', 'no backup in its catalog');

  // What must be there: the files the catalog's records list, and the newest backup's own file.
  const replay = catalogFiles(v.entries);
  const want = new Set(replay.complete ? replay.files : []);
  if (replay.complete) result.files.listed = want.size;
  if (newest) want.add(`snapshots/${newest.fingerprint}`);
  const missing = [...want].filter((n) => !held.has(n)).sort();
  result.files.missingCount = missing.length;
  result.files.missing = missing.slice(0, SHOW_MISSING);
  if (missing.length)
    problem(
      'missing',
      `${missing.length} file(s) its catalog lists are missing: ${missing.slice(0, SHOW_MISSING).join(', ')}${missing.length > SHOW_MISSING ? ', ...' : ''}`,
    );
  result.ok = result.problems.length === 0;
  return result;
}

/**
 * Whether a verified catalog continues the head seen before: it has at least as many entries and
 * its line number `count` hashes to the same value (each entry holds the hash of the line before).
 */
export function extendsHead(v: VerifiedCatalog, old: { count: number; last: string }): boolean {
  if (old.count === 0) return true;
  if (old.count > v.entries.length) return false;
  const hashOfLine =
    old.count < v.entries.length ? v.entries[old.count]!.prev : v.unfinishedAppend ? null : v.head.last;
  return hashOfLine === old.last;
}

/** The head to remember for a box: the one it verified with, unless it rewrote what was seen before. */
export function headToRemember(r: BoxResult, before: RememberedHead | null): CatalogHead | null {
  if (!r.head || r.problems.some((p) => p.kind === 'rewound' || p.kind === 'catalog' || p.kind === 'key'))
    return before;
  return r.head;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
