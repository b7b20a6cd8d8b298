import {
  type BackupGroup,
  type FileEntry,
  groupBackups,
  groupKey,
  type LocalFile,
  PART_SUFFIX,
  parseBackupName,
} from './backups.js';

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

export function planCopy(local: readonly LocalFile[], remote: RemoteListing, limit: number): CopyPlan {
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
        if (there === file.size) {
          plan.present.push(file);
          continue;
        }
        const part = parts.get(file.name + PART_SUFFIX);
        plan.uploads.push({
          file,
          // A part longer than the file is from another file of that name: start over.
          resumeFrom: part !== undefined && part <= file.size ? part : 0,
          replaces: there ?? null,
        });
      }
    }
  }
  return plan;
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
 *   size; the remote only ever holds verified files under a final name), so the one copy that has
 *   not reached the remote is never the one removed;
 * - the remote's old backups of a kind are deleted only once every kept backup of that kind that
 *   exists here is on the remote too, so a copy that failed half-way never leaves the remote with
 *   fewer than `limit` whole backups.
 * Files whose names are not zshield's backup pattern are not in any group and are never listed.
 */
export function planRetention(
  local: readonly LocalFile[],
  remote: RemoteListing,
  limit: number,
): RetentionPlan {
  const keep = keepSet(local, remote.files, limit);
  const remoteSize = new Map(remote.files.map((f) => [f.name, f.size]));
  const onRemote = (f: FileEntry) => remoteSize.get(f.name) === f.size;
  const localGroups = groupBackups(local);
  const remoteGroups = groupBackups(remote.files);
  const plan: RetentionPlan = { limit, deleteLocal: [], deleteRemote: [], kept: [] };

  for (const [kind, groups] of localGroups) {
    for (const g of groups) {
      if (keep.has(groupKey(g))) continue;
      if (g.files.every(onRemote)) plan.deleteLocal.push(...g.files);
      else plan.kept.push({ kind, stamp: g.stamp, where: 'local', reason: 'not on the remote yet' });
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
