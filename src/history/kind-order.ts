// The order that keeps a target a working repository at every moment, with several files in flight:
// data before the index that points into it before the snapshots (deletes the other way round).
import { type FileKind, kindOf, type RepoFile } from './repo-store.js';

export const UPLOAD_ORDER: FileKind[] = ['config', 'keys', 'data', 'index', 'snapshots'];
export const DELETE_ORDER: FileKind[] = ['snapshots', 'index', 'data', 'keys'];

/**
 * Files in flight per target: one file's fixed costs (opening its part, the server's check, the
 * rename: round trips each) overlap the others' bytes.
 */
export const FILES_IN_FLIGHT = 4;

/**
 * Run `fn` over `files` (in kind order, as planReplication gives them), up to `limit` at a time,
 * across kinds: a file's bytes go up while those of the kind before are still in flight, but `fn`
 * calls `ready()` before the step that makes the file visible there (the rename of its verified
 * part; for a delete, the delete), and it resolves only once every file of the kinds before is
 * done. So no index is named on a target before every data file it points into, and no snapshot
 * before its index (the reverse in DELETE_ORDER). Files start in order, so whatever a file waits
 * for has started already: no wait can hold a slot another needs. On the first failure no further
 * file starts, `ready()` of the kinds after a failed file rejects (they are never named), the ones
 * in flight end, then the failure is thrown (a resumed run finds what they left).
 */
export async function inKindOrder(
  files: readonly RepoFile[],
  limit: number,
  fn: (f: RepoFile, ready: () => Promise<void>) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const kinds: FileKind[] = [];
  const left = new Map<FileKind, number>();
  for (const f of files) {
    const k = kindOf(f.name)!;
    if (!left.has(k)) kinds.push(k);
    left.set(k, (left.get(k) ?? 0) + 1);
  }
  const done = new Map(kinds.map((k) => [k, deferred()]));
  for (const d of done.values()) d.promise.catch(() => {});
  const readyFor = (k: FileKind) => {
    const before = kinds.slice(0, kinds.indexOf(k)).map((b) => done.get(b)!.promise);
    const all = Promise.all(before).then(() => {});
    return () => all;
  };
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < files.length && !signal?.aborted) {
      const f = files[next++]!;
      const k = kindOf(f.name)!;
      try {
        await fn(f, readyFor(k));
        const n = left.get(k)! - 1;
        left.set(k, n);
        if (n === 0) done.get(k)!.resolve();
      } catch (err) {
        failure ??= { err };
        done.get(k)!.reject(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, files.length)) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
