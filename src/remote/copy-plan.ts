import { type BackupGroup, groupBackups, groupKey } from './backups.js';
import type { FileEntry, LocalFile } from '../ssh/files.js';
import { PART_SUFFIX, parseBackupName } from '../names/backup-files.js';

/**
 * What a remote copy will do, decided from two listings and nothing else (no I/O here): the copy
 * plan before the transfer, the retention plan after it, each printed from the same objects that
 * are then applied.
 */

/** The destination directory's content: finished files, and uploads in progress. */
export interface RemoteListing {
  files: FileEntry[];
  parts: FileEntry[];
}

export interface Upload {
  file: LocalFile;
  /** Bytes of an interrupted upload already on the remote: the transfer continues from there. */
  resumeFrom: number;
  /** The remote has a finished file of this name with another size: it is replaced. */
  replaces: number | null;
  /** The remote's file of this name has the size but not the content (found by its SHA-256). */
  differs: boolean;
}

export interface CopyPlan {
  limit: number;
  uploads: Upload[];
  /** Already on the remote with the same size. */
  present: LocalFile[];
  /** Older than the newest `limit` of their kind (counting the remote's too): not worth copying. */
  tooOld: LocalFile[];
}

/** The newest `limit` backups of each kind, over the local and remote copies together. */
function keepSet(local: readonly FileEntry[], remote: readonly FileEntry[], limit: number): Set<string> {
  const keep = new Set<string>();
  for (const groups of groupBackups([...local, ...remote]).values()) {
    for (const g of groups.slice(0, limit)) keep.add(groupKey(g));
  }
  return keep;
}

/**
 * `differs`: names whose remote copy was found not to match the local file by SHA-256 and has not
 * been replaced since (kept across runs: a failed re-upload must not leave it counted as good).
 */
export function planCopy(
  local: readonly LocalFile[],
  remote: RemoteListing,
  limit: number,
  differs: ReadonlySet<string> = new Set(),
): CopyPlan {
  const keep = keepSet(local, remote.files, limit);
  const finished = new Map(remote.files.map((f) => [f.name, f.size]));
  const parts = new Map(remote.parts.map((f) => [f.name, f.size]));
  const plan: CopyPlan = { limit, uploads: [], present: [], tooOld: [] };
  for (const groups of groupBackups(local).values()) {
    for (const g of groups) {
      for (const file of g.files) {
        if (!keep.has(groupKey(g))) {
          plan.tooOld.push(file);
          continue;
        }
        const there = finished.get(file.name);
        const bad = there === file.size && differs.has(file.name);
        if (there === file.size && !bad) {
          plan.present.push(file);
          continue;
        }
        plan.uploads.push(upload(file, parts.get(file.name + PART_SUFFIX), there ?? null, bad));
      }
    }
  }
  return plan;
}

export function upload(
  file: LocalFile,
  part: number | undefined,
  replaces: number | null,
  differs: boolean,
): Upload {
  // A part longer than the file is from another file of that name: start over.
  return { file, resumeFrom: part !== undefined && part <= file.size ? part : 0, replaces, differs };
}

/** A file already on the remote, as the verification rotation sees it. */
export interface CheckCandidate {
  file: LocalFile;
  /** When its remote copy was last found to match by SHA-256 (ISO); null: never, by this box. */
  checkedAt: string | null;
  /** The local file changed (identity) since then: what the remote holds may be the old content. */
  changed: boolean;
}

export interface Check {
  file: LocalFile;
  why: string;
}

/**
 * Which files already on the remote are compared by SHA-256 this run: with `all`, every one;
 * otherwise each local file changed since its copy was last checked, and the ceil(n/cycle) least
 * recently checked of the others (never checked first), so `cycle` runs cover every file. The size
 * a listing gives cannot tell a corrupted copy from a good one.
 */
export function planChecks(cands: readonly CheckCandidate[], cycle: number, all: boolean): Check[] {
  if (all) return cands.map((c) => ({ file: c.file, why: '--verify-all' }));
  const checks: Check[] = cands
    .filter((c) => c.changed)
    .map((c) => ({ file: c.file, why: 'changed here since its copy was checked' }));
  const share = Math.ceil(cands.length / cycle);
  const rest = cands
    .filter((c) => !c.changed)
    .sort(
      (a, b) =>
        (a.checkedAt ?? '').localeCompare(b.checkedAt ?? '') || a.file.name.localeCompare(b.file.name),
    )
    .slice(0, share);
  for (const c of rest) {
    checks.push({
      file: c.file,
      why: c.checkedAt === null ? 'never checked' : `last checked ${c.checkedAt}`,
    });
  }
  return checks;
}

export interface KeptGroup {
  kind: string;
  stamp: string;
  where: 'local' | 'remote';
  reason: string;
}

export interface RetentionPlan {
  limit: number;
  deleteLocal: LocalFile[];
  /** Names in the destination directory: finished files and abandoned parts. */
  deleteRemote: string[];
  /** Older than the limit, kept anyway, and why. */
  kept: KeptGroup[];
}

/**
 * After a copy: keep the newest `limit` backups of each kind, here and there. Two rules protect
 * data over the limit:
 * - a local backup is deleted only if every one of its files is on the remote (same name and
 *   size; the remote only ever holds verified files under a final name) and none was found to
 *   differ (`differs`), so the one good copy is never the one removed;
 * - the remote's old backups of a kind are deleted only once every kept backup of that kind that
 *   exists here is on the remote too, so a copy that failed half-way never leaves the remote with
 *   fewer than `limit` whole backups.
 * Files whose names are not zshield's backup pattern are not in any group and are never listed.
 */
export function planRetention(
  local: readonly LocalFile[],
  remote: RemoteListing,
  limit: number,
  differs: ReadonlySet<string> = new Set(),
): RetentionPlan {
  const keep = keepSet(local, remote.files, limit);
  const remoteSize = new Map(remote.files.map((f) => [f.name, f.size]));
  const onRemote = (f: FileEntry) => remoteSize.get(f.name) === f.size && !differs.has(f.name);
  const localGroups = groupBackups(local);
  const remoteGroups = groupBackups(remote.files);
  const plan: RetentionPlan = { limit, deleteLocal: [], deleteRemote: [], kept: [] };

  for (const [kind, groups] of localGroups) {
    for (const g of groups) {
      if (keep.has(groupKey(g))) continue;
      if (g.files.every(onRemote)) plan.deleteLocal.push(...g.files);
      else {
        const reason = g.files.some((f) => differs.has(f.name))
          ? 'its remote copy does not match'
          : 'not on the remote yet';
        plan.kept.push({ kind, stamp: g.stamp, where: 'local', reason });
      }
    }
  }
  for (const [kind, groups] of remoteGroups) {
    const keptHere = (localGroups.get(kind) ?? []).filter((g) => keep.has(groupKey(g)));
    const complete = keptHere.every((g: BackupGroup<LocalFile>) => g.files.every(onRemote));
    for (const g of groups) {
      if (keep.has(groupKey(g))) continue;
      if (complete) plan.deleteRemote.push(...g.files.map((f) => f.name));
      else
        plan.kept.push({
          kind,
          stamp: g.stamp,
          where: 'remote',
          reason: `newer ${kind} backups have not all reached the remote`,
        });
    }
  }
  // An upload in progress is kept while its file is still one to copy; otherwise it can never be
  // finished, and it is ours (the suffix is zshield's), so it goes.
  const wanted = new Set(
    local
      .filter((f) => {
        const b = parseBackupName(f.name);
        return b !== null && keep.has(groupKey(b));
      })
      .map((f) => f.name),
  );
  for (const p of remote.parts) {
    const base = p.name.slice(0, -PART_SUFFIX.length);
    if (!p.name.endsWith(PART_SUFFIX) || !parseBackupName(base)) continue;
    if (!wanted.has(base)) plan.deleteRemote.push(p.name);
  }
  return plan;
}

/** Split a destination directory's names into finished backups and parts (others are not ours). */
export function classifyRemote(entries: readonly FileEntry[]): RemoteListing {
  const files: FileEntry[] = [];
  const parts: FileEntry[] = [];
  for (const e of entries) {
    if (e.name.endsWith(PART_SUFFIX)) {
      if (parseBackupName(e.name.slice(0, -PART_SUFFIX.length))) parts.push(e);
    } else if (parseBackupName(e.name)) files.push(e);
  }
  return { files, parts };
}
