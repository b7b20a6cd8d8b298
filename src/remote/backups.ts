import { lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log/logger.js';
import { readJson } from '../state/store.js';
import { writeJsonAtomic } from '../system/atomic-file.js';
import type { BackupName } from '../names/backup-files.js';
import { parseBackupName } from '../names/backup-files.js';
import type { Writes } from '../system/writes.js';
import type { FileEntry, LocalFile } from '../ssh/files.js';

export interface BackupGroup<F extends FileEntry = FileEntry> {
  kind: string;
  stamp: string;
  files: F[];
}

export const groupKey = (g: BackupName) => `${g.kind}@${g.stamp}`;

/** Group backup files by (kind, time); other names are dropped. Each kind's groups newest first. */
export function groupBackups<F extends FileEntry>(files: readonly F[]): Map<string, BackupGroup<F>[]> {
  const groups = new Map<string, BackupGroup<F>>();
  for (const f of files) {
    const b = parseBackupName(f.name);
    if (!b) continue;
    const key = groupKey(b);
    let g = groups.get(key);
    if (!g) {
      g = { kind: b.kind, stamp: b.stamp, files: [] };
      groups.set(key, g);
    }
    g.files.push(f);
  }
  const byKind = new Map<string, BackupGroup<F>[]>();
  for (const g of groups.values()) {
    g.files.sort((a, b) => a.name.localeCompare(b.name));
    const list = byKind.get(g.kind) ?? [];
    list.push(g);
    byKind.set(g.kind, list);
  }
  for (const list of byKind.values()) list.sort((a, b) => b.stamp.localeCompare(a.stamp));
  return new Map([...byKind].sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * The backup files in the source directories (not recursive; symlinks and other non-files are
 * skipped, so a link cannot make us copy or delete something outside). A missing directory is
 * reported and treated as empty: an appliance that has not made an image yet has none.
 */
export function scanLocal(sources: readonly string[], log: Logger): LocalFile[] {
  const out: LocalFile[] = [];
  const seen = new Map<string, string>();
  for (const dir of sources) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        log.warn(`remote: source directory ${dir} does not exist; nothing to copy from it`);
        continue;
      }
      throw err;
    }
    for (const name of names.sort()) {
      if (!parseBackupName(name)) continue;
      const p = path.join(dir, name);
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (!st?.isFile()) continue;
      const prior = seen.get(name);
      if (prior) {
        // The remote directory is flat: two sources with the same name would overwrite each other.
        log.warn(`remote: ${p} has the same name as ${prior}; only the first is copied`);
        continue;
      }
      seen.set(name, p);
      out.push({ name, size: st.size, path: p });
    }
  }
  return out;
}

/**
 * What this box knows of its files' copies on one remote: the SHA-256 and the local identity
 * (transfer.ts identityOf) at the last time the remote copy was found to match, and whether it was
 * last found NOT to match. Kept in stateDir so that a rewrite of a local file after its copy, and
 * a remote copy found corrupted but not yet replaced, survive to the next run.
 */
export interface CopyRecord {
  size: number;
  sha256: string;
  identity: string;
  /** ISO time of the last check that matched (upload or verification). */
  checkedAt: string;
  /** The last check found the remote's bytes differ from the local file's. */
  differs?: true;
}

interface RecordFile {
  version: 1;
  targets: Record<string, Record<string, CopyRecord>>;
}

export const copyRecordsFile = (stateDir: string) => path.join(stateDir, 'remote-copies.json');

export class CopyRecords {
  private readonly all: RecordFile;
  readonly byName: Map<string, CopyRecord>;

  constructor(
    private readonly writes: Writes,
    private readonly file: string,
    private readonly target: string,
  ) {
    const read = readJson<RecordFile>(file);
    this.all = read?.version === 1 && typeof read.targets === 'object' ? read : { version: 1, targets: {} };
    this.byName = new Map(Object.entries(this.all.targets[target] ?? {}));
  }

  /** Names whose remote copy was found to differ and has not been replaced since. */
  differs(): Set<string> {
    return new Set([...this.byName].filter(([, r]) => r.differs).map(([n]) => n));
  }

  set(name: string, rec: CopyRecord): void {
    this.byName.set(name, rec);
    this.save();
  }

  markDiffers(name: string): void {
    const r = this.byName.get(name);
    this.byName.set(name, { ...(r ?? { size: 0, sha256: '', identity: '', checkedAt: '' }), differs: true });
    this.save();
  }

  /** Drop the records of files the remote no longer has. */
  keepOnly(names: ReadonlySet<string>): void {
    for (const n of [...this.byName.keys()]) if (!names.has(n)) this.byName.delete(n);
    this.save();
  }

  private save(): void {
    this.all.targets[this.target] = Object.fromEntries(
      [...this.byName].sort(([a], [b]) => a.localeCompare(b)),
    );
    writeJsonAtomic(this.writes, this.file, this.all, 0o600);
  }
}
