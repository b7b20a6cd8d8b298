import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { NotFoundError, RefusedError, VerifyError } from '../errors.js';
import { type FileRecord, fileRecord, replayFiles } from './catalog-files.js';
import { listLocalRepo } from './repo-store.js';
import { writePrivateFileAtomic } from '../system/atomic-file.js';
import type { Writes } from '../system/writes.js';
import {
  canonicalJson,
  type Signed,
  type SigningKey,
  signDocument,
  verifyDocument,
} from '../system/signing.js';

/**
 * The catalog of fingerprints, kept where a rollback of lv-root cannot reach it:
 * an append-only file of signed entries, one JSON line each, every entry holding the hash of the
 * one before, and a signed head beside it (entry count and last hash). An edited entry fails its
 * signature; a removed or reordered one breaks the chain; dropped newest entries disagree with
 * the head; a catalog re-signed by anyone else names a key that is not the pinned one.
 */

export type CatalogEntry =
  | (EntryBase & {
      kind: 'backup';
      fingerprint: string;
      host: string;
      reason: string;
      version: string;
      /** Bytes and files of the tree, bytes the repository grew by. */
      sizes: { bytes: number; files: number; added: number };
      /** The repository's files after this backup (catalog-files.ts); absent in older catalogs. */
      files?: FileRecord;
    })
  | (EntryBase & { kind: 'replicated'; fingerprint: string; target: string })
  | (EntryBase & {
      kind: 'forgotten';
      fingerprint: string;
      /** The repository's files after the prune (on the last entry of a run). */
      files?: FileRecord;
    });

interface EntryBase {
  seq: number;
  /** SHA-256 of the previous line as written ('' for the first). */
  prev: string;
  time: string;
}

export interface CatalogHead {
  count: number;
  /** SHA-256 of the last line ('' when empty). */
  last: string;
}

export type NewEntry = CatalogEntry extends infer E
  ? E extends CatalogEntry
    ? Omit<E, 'seq' | 'prev'>
    : never
  : never;

export const catalogFile = (dir: string) => path.join(dir, 'catalog.jsonl');
export const headFile = (dir: string) => path.join(dir, 'catalog.head.json');
export const CATALOG_FILES = ['catalog.jsonl', 'catalog.head.json'] as const;

const lineHash = (line: string) => createHash('sha256').update(line).digest('hex');

export interface VerifiedCatalog {
  entries: CatalogEntry[];
  head: CatalogHead;
  /** An append stopped between writing its entry and its head: the entry is valid and kept. */
  unfinishedAppend: boolean;
}

/** Read and check the whole catalog against the pinned public key; throws VerifyError naming the fault. */
export function verifyCatalog(dir: string, publicKey: string | null): VerifiedCatalog {
  if (!publicKey)
    throw new RefusedError('history.publicKey is not set: the catalog cannot be checked', {
      hint: 'zshield history init pins it; on another box copy it from the first box (zshield history status)',
    });
  if (!existsSync(headFile(dir)))
    throw new NotFoundError(`no catalog in ${dir} (no ${path.basename(headFile(dir))})`);
  const head = verifyDocument<CatalogHead>(readJson(headFile(dir)), [publicKey], 'catalog head');
  const text = existsSync(catalogFile(dir)) ? readFileSync(catalogFile(dir), 'utf8') : '';
  const lines = text.split('\n').filter((l) => l.length > 0);
  const entries: CatalogEntry[] = [];
  let prev = '';
  for (const [i, line] of lines.entries()) {
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch {
      throw new VerifyError(`catalog entry ${i + 1}: not JSON (damaged)`);
    }
    const e = verifyDocument<CatalogEntry>(doc, [publicKey], `catalog entry ${i + 1}`);
    if (e.seq !== i + 1)
      throw new VerifyError(
        `catalog entry ${i + 1}: holds number ${e.seq} (an entry was removed, added or moved)`,
      );
    if (e.prev !== prev)
      throw new VerifyError(
        `catalog entry ${i + 1}: does not follow entry ${i} (an entry was removed or moved)`,
      );
    entries.push(e);
    prev = lineHash(line);
  }
  if (head.count === entries.length && head.last === prev) return { entries, head, unfinishedAppend: false };
  // One valid, signed entry past the head is an append cut before its head was written: only the
  // key's holder can make one.
  if (head.count === entries.length - 1 && entries.length > 0 && head.last === entries.at(-1)!.prev)
    return { entries, head, unfinishedAppend: true };
  if (head.count > entries.length)
    throw new VerifyError(
      `catalog: the head says ${head.count} entries, the file has ${entries.length} (newest entries were removed)`,
    );
  throw new VerifyError(
    `catalog: the head (${head.count} entries) does not match the file (${entries.length})`,
  );
}

/** An empty catalog: a signed head of zero entries (history init). Never over an existing one. */
export function createCatalog(writes: Writes, dir: string, key: SigningKey): void {
  if (existsSync(headFile(dir))) return;
  writeHead(writes, dir, { count: 0, last: '' }, key);
}

/** Append entries to a catalog that verifies, then sign the new head. */
export function appendCatalog(writes: Writes, dir: string, key: SigningKey, add: NewEntry[]): CatalogEntry[] {
  const current = verifyCatalog(dir, key.publicText);
  writes.allow(`append to ${catalogFile(dir)}`);
  const lines = readLines(dir);
  let prev = lines.length ? lineHash(lines.at(-1)!) : '';
  let seq = current.entries.length;
  const made: CatalogEntry[] = [];
  const fd = openSync(catalogFile(dir), 'a', 0o600);
  try {
    for (const n of add) {
      const entry = { ...n, seq: ++seq, prev } as CatalogEntry;
      const line = canonicalJson(signDocument(entry, key));
      writeSync(fd, `${line}\n`);
      prev = lineHash(line);
      made.push(entry);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  writeHead(writes, dir, { count: seq, last: prev }, key);
  return made;
}

function writeHead(writes: Writes, dir: string, head: CatalogHead, key: SigningKey): void {
  const doc: Signed<CatalogHead> = signDocument(head, key);
  writePrivateFileAtomic(writes, headFile(dir), `${canonicalJson(doc)}\n`);
}

function readLines(dir: string): string[] {
  if (!existsSync(catalogFile(dir))) return [];
  return readFileSync(catalogFile(dir), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new VerifyError(`${file}: not JSON (damaged)`);
  }
}

export interface CatalogView {
  fingerprint: string;
  time: string;
  host: string;
  reason: string;
  sizes: { bytes: number; files: number; added: number };
  targets: string[];
  forgotten: boolean;
}

/** One line per backup: what it is and where it has been replicated. */
export function catalogView(entries: readonly CatalogEntry[]): CatalogView[] {
  const out = new Map<string, CatalogView>();
  for (const e of entries) {
    if (e.kind === 'backup') {
      out.set(e.fingerprint, {
        fingerprint: e.fingerprint,
        time: e.time,
        host: e.host,
        reason: e.reason,
        sizes: e.sizes,
        targets: [],
        forgotten: false,
      });
      continue;
    }
    const v = out.get(e.fingerprint);
    if (!v) continue;
    if (e.kind === 'replicated' && !v.targets.includes(e.target)) v.targets.push(e.target);
    if (e.kind === 'forgotten') v.forgotten = true;
  }
  return [...out.values()];
}

/** A restore's check: the fingerprint must be a backup of this catalog (and not forgotten). */
export function requireCataloged(dir: string, publicKey: string | null, fingerprint: string): CatalogView {
  const { entries } = verifyCatalog(dir, publicKey);
  const v = catalogView(entries).find((x) => x.fingerprint === fingerprint);
  if (!v)
    throw new RefusedError(`fingerprint ${fingerprint} is not in the catalog: refusing to restore it`, {
      hint: 'zshield history list shows the catalog; to restore a backup the catalog does not know, knowingly, add --allow-uncataloged',
    });
  return v;
}

/**
 * The record of the local repository's files for the next entry: what changed since the list the
 * catalog's records give (all of it, when the catalog has none yet).
 */
export function repoFilesRecord(dir: string, repo: string, publicKey: string | null): FileRecord {
  // Against the replay, whole or not: its add and drop take whatever the replay gives to the list now.
  const before = catalogFiles(verifyCatalog(dir, publicKey).entries);
  return fileRecord(
    before.files,
    listLocalRepo(repo).map((f) => f.name),
  );
}

/** The repository's files as a verified catalog's records give them. */
export const catalogFiles = (entries: readonly CatalogEntry[]) =>
  replayFiles(entries.map((e) => (e.kind === 'replicated' ? {} : e)));
