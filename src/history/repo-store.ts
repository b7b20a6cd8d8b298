import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { eachLimited } from '../system/each-limited.js';
import { VerifyError } from '../errors.js';

/**
 * A restic repository is a folder of files that never change once written, each (but `config`)
 * named by the SHA-256 of its content. Replicating it is giving a target the files it lacks, in an
 * order that keeps the target a working repository at every moment; checking a copy is hashing
 * its files. A Store is one place that holds such a copy. SFTP is the one built (sftp-store.ts);
 * an S3-compatible object store is the same five operations on object keys.
 */

export interface RepoFile {
  /** Path inside the repository, `/`-separated: `config`, `keys/<id>`, `data/ab/<id>`, `index/<id>`, `snapshots/<id>`. */
  name: string;
  size: number;
  /** Local files only: when it was written (repository files never change once written). */
  mtimeMs?: number;
}

export interface PutResult {
  /** Bytes sent in this call (a resumed file sends only its rest). */
  sent: number;
  resumedFrom: number;
}

export interface Store {
  /** `name (sftp user@host:port:/dir)`, for messages. */
  readonly label: string;
  /** The repository's files there (work in progress excluded). */
  list(): Promise<RepoFile[]>;
  /**
   * Files may be written here but not deleted (an object store whose policy denies the box's key
   * every delete): replication leaves what the local repository no longer has, and a damaged file
   * is written over (`replace`), not removed first.
   */
  readonly appendOnly: boolean;
  /** Files replication keeps in flight to it (default FILES_IN_FLIGHT, replicate.ts). */
  readonly filesInFlight?: number;
  /**
   * Give it one file, verified there before it takes its name; resumes a partial earlier try.
   * `replace`: the name is taken already by a damaged copy, which this write replaces.
   * `ready`: awaited before the file takes its name there (its bytes may go up before), so that
   * a file named by another (an index, a snapshot) appears only after those it names.
   */
  put(
    localPath: string,
    file: RepoFile,
    opts?: { replace?: boolean; ready?: () => Promise<void> },
  ): Promise<PutResult>;
  remove(name: string): Promise<void>;
  /** SHA-256 of a file as stored there. */
  sha256(file: RepoFile): Promise<string>;
  /** Copy a file from there to a local path (for a temporary local copy of the repository). */
  fetch(file: RepoFile, localPath: string): Promise<void>;
  /** The catalog's files, beside the repository (`catalog/<name>`). */
  /** `ready`: awaited before the file takes its name there (its bytes may go up before). */
  putCatalog(localPath: string, name: string, ready?: () => Promise<void>): Promise<void>;
  fetchCatalog(name: string, localPath: string): Promise<boolean>;
  close(): void;
}

/** Which kind of repository file, in the order a target must receive them. */
export type FileKind = 'config' | 'keys' | 'data' | 'index' | 'snapshots';

export function kindOf(name: string): FileKind | null {
  if (name === 'config') return 'config';
  const top = name.split('/')[0];
  return top === 'keys' || top === 'data' || top === 'index' || top === 'snapshots' ? top : null;
}

/** The SHA-256 a file must have: its name for content-addressed files, null for `config`. */
export function expectedHash(name: string): string | null {
  const base = name.split('/').at(-1) ?? '';
  return kindOf(name) !== 'config' && /^[0-9a-f]{64}$/.test(base) ? base : null;
}

/** The local repository's files (locks/ is not part of a copy: each place has its own). */
export function listLocalRepo(repo: string): RepoFile[] {
  const out: RepoFile[] = [];
  const walk = (rel: string) => {
    const abs = path.join(repo, rel);
    for (const e of readdirSync(abs, { withFileTypes: true })) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (name !== 'locks') walk(name);
      } else if (e.isFile() && kindOf(name) !== null && !e.name.startsWith('.')) {
        const st = statSync(path.join(repo, name));
        out.push({ name, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
  };
  walk('');
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** A restic snapshot's fingerprint is the name of its file in snapshots/. */
export const snapshotIdsIn = (files: readonly RepoFile[]) =>
  files.filter((f) => kindOf(f.name) === 'snapshots').map((f) => f.name.slice('snapshots/'.length));

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** The order a copy is fetched in: what proves the password, what names the data, the data. */
const FETCH_ORDER: FileKind[] = ['config', 'keys', 'index', 'snapshots', 'data'];

export interface FetchHooks {
  onFile?: (bytesDone: number, bytesTotal: number) => void;
  /**
   * Called once config and keys/ are here, before anything else is fetched: restic can prove the
   * password with those alone (`cat config`), so a wrong one costs two small files, not the data.
   */
  afterKeys?: () => Promise<void>;
  /**
   * Called once index/ and snapshots/ are here too, before the first data file: the index names
   * the data files the snapshots need, so one the store lacks is found before any is fetched.
   */
  afterIndex?: (files: readonly RepoFile[]) => Promise<void>;
}

/**
 * Fetch every file of a store's repository into `dir` (made as restic lays it out), each checked
 * against its name's hash (config against its size): a damaged file on a target stops the fetch
 * with the file named, rather than handing restic a repository that fails later. In FETCH_ORDER,
 * with the hooks between the stages.
 */
export async function fetchRepository(
  store: Store,
  dir: string,
  hooks: FetchHooks = {},
): Promise<RepoFile[]> {
  const files = await store.list();
  if (!files.some((f) => f.name === 'config'))
    throw new VerifyError(`${store.label}: holds no restic repository (no config file)`);
  const total = files.reduce((n, f) => n + f.size, 0);
  const rank = (f: RepoFile) => FETCH_ORDER.indexOf(kindOf(f.name)!);
  const ordered = [...files].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  let bytes = 0;
  const fetchOne = async (f: RepoFile) => {
    const local = path.join(dir, ...f.name.split('/'));
    mkdirSync(path.dirname(local), { recursive: true, mode: 0o700 });
    await store.fetch(f, local);
    const want = expectedHash(f.name);
    if (want !== null) {
      const got = await sha256File(local);
      if (got !== want)
        throw new VerifyError(`${store.label}: ${f.name} is damaged (its SHA-256 is ${got})`, {
          hint: 'zshield history replicate --verify-all replaces damaged files from the local repository',
        });
    }
    bytes += f.size;
    hooks.onFile?.(bytes, total);
  };
  // Each stage's files several at a time (each on its own channel where the store has them); the
  // next stage starts once every file of this one is here and checked.
  const fetchKinds = (kinds: FileKind[]) =>
    eachLimited(
      ordered.filter((f) => kinds.includes(kindOf(f.name)!)),
      store.filesInFlight ?? FETCH_IN_FLIGHT,
      fetchOne,
    );
  await fetchKinds(['config', 'keys']);
  await hooks.afterKeys?.();
  await fetchKinds(['index', 'snapshots']);
  for (const sub of ['locks', 'snapshots', 'index', 'keys', 'data'])
    mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
  await hooks.afterIndex?.(files);
  await fetchKinds(['data']);
  return files;
}

/** Files fetched at once when the store does not say (as many as replication sends). */
const FETCH_IN_FLIGHT = 4;
