// What a target must receive and lose to equal the local repository (from two listings, no I/O),
// and which share of its files this run's rotating verification reads.
import { type FileKind, kindOf, type RepoFile } from './repo-store.js';
import { DELETE_ORDER, UPLOAD_ORDER } from './kind-order.js';

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
