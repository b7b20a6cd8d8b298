import { createHash } from 'node:crypto';

/**
 * The repository's files, as the catalog records them. restic's index and snapshot files are
 * encrypted with the box's password, which a vendor's fleet view does not hold; so whether a
 * target holds every file a backup needs is told from the catalog instead: each backup entry (and
 * the entry after a prune) carries what the repository's file list gained and lost since the
 * entry before, with the count and a digest of the whole list, all under the box's signature.
 * Replaying the entries gives the list; the digest proves the replay complete.
 */
export interface FileRecord {
  /** Repository file names added since the previous record (`data/ab/<id>`, `index/<id>`, ...). */
  add: string[];
  /** Names gone since the previous record (a prune). */
  drop: string[];
  /** Files in the repository after this entry. */
  count: number;
  /** SHA-256 of the sorted names, one per line. */
  digest: string;
}

export function filesDigest(names: Iterable<string>): string {
  const h = createHash('sha256');
  for (const n of [...names].sort()) h.update(`${n}\n`);
  return h.digest('hex');
}

/** The record that takes the list `before` to `now`. */
export function fileRecord(before: ReadonlySet<string>, now: readonly string[]): FileRecord {
  const nowSet = new Set(now);
  return {
    add: now.filter((n) => !before.has(n)).sort(),
    drop: [...before].filter((n) => !nowSet.has(n)).sort(),
    count: nowSet.size,
    digest: filesDigest(nowSet),
  };
}

export interface ReplayedFiles {
  files: Set<string>;
  /** The last record's count and digest match the replay (false: a record is missing, or none). */
  complete: boolean;
  /** How many entries carried a record. */
  records: number;
}

/** The file list after the given entries (those without a record are skipped). */
export function replayFiles(entries: readonly { files?: FileRecord }[]): ReplayedFiles {
  const files = new Set<string>();
  let last: FileRecord | null = null;
  let records = 0;
  for (const e of entries) {
    if (!e.files) continue;
    for (const n of e.files.drop) files.delete(n);
    for (const n of e.files.add) files.add(n);
    last = e.files;
    records++;
  }
  const complete = last !== null && last.count === files.size && last.digest === filesDigest(files);
  return { files, complete, records };
}
