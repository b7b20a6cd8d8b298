import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Context } from '../context.js';
import { BusyError, CommandError, ConfigError, NotFoundError, VerifyError } from '../errors.js';
import type { Command } from '../system/command.js';

/**
 * restic, driven with `--json` through the Runner. restic only ever opens a LOCAL repository (the
 * box's own, or a temporary copy of a target's files): zshield does all the network itself, so
 * restic never holds a credential of a target. The repository password reaches restic through
 * `--password-file`, a 0600 file in the run directory (a tmpfs) that exists only while restic runs.
 */

/** A 64-hex restic snapshot ID: the backup's fingerprint, the same on every copy of the repository. */
export const FINGERPRINT = /^[0-9a-f]{64}$/;

export interface ResticSnapshot {
  id: string;
  time: string;
  tree: string;
  paths: string[];
  hostname: string;
  tags: string[];
}

export interface BackupSummary {
  snapshotId: string;
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  dataAdded: number;
  totalFilesProcessed: number;
  totalBytesProcessed: number;
}

export interface ResticOptions {
  repo: string;
  /** The clear password, in memory only (already registered with the logger's redaction). */
  password: string;
  cacheDir: string;
  runDir: string;
}

/** The repository refused the password: nothing else is wrong, and nothing was changed. */
export class RepositoryPasswordError extends ConfigError {}

export class Restic {
  constructor(
    private readonly ctx: Pick<Context, 'runner' | 'log' | 'signal'> & { dryRun?: boolean },
    readonly opts: ResticOptions,
  ) {}

  /**
   * Runs one restic command with the password in a file that lives only for that command. The
   * name is random and the file is created exclusively with 0600, so nothing else can have it open.
   */
  async run(args: string[], extra: Partial<Command> & { mutates: boolean }): Promise<string> {
    mkdirSync(this.opts.runDir, { recursive: true, mode: 0o700 });
    const pwFile = path.join(this.opts.runDir, `.restic-pw-${randomBytes(8).toString('hex')}`);
    const fd = openSync(pwFile, 'wx', 0o600);
    try {
      fchmodSync(fd, 0o600);
      writeSync(fd, this.opts.password);
    } finally {
      closeSync(fd);
    }
    try {
      const r = await this.ctx.runner.run({
        file: 'restic',
        args: [
          '--repo',
          this.opts.repo,
          '--password-file',
          pwFile,
          '--cache-dir',
          this.opts.cacheDir,
          '--json',
          // A dry run leaves no trace, not even restic's read lock in the repository.
          ...(this.ctx.dryRun && !extra.mutates && !args.includes('--no-lock') ? ['--no-lock'] : []),
          ...args,
        ],
        timeoutMs: 24 * 3600_000,
        ...extra,
      });
      return r.stdout;
    } catch (err) {
      throw classify(err, this.opts.repo);
    } finally {
      rmSync(pwFile, { force: true });
    }
  }

  /**
   * Locks left in the repository by a restic that died with its run (a power cut or kill during
   * a take): restic would refuse every later operation on them. Called under zshield's history
   * lock, so no zshield job holds one; `restic unlock` (without --remove-all) removes only the
   * locks restic itself finds stale (their process is gone from this host, or they are old),
   * never one a live process holds. Only files named by a lock's ID count: restic writes each
   * file as `ID-tmp-RANDOM` and renames it, so a run killed in between leaves a temporary file
   * that is no lock (restic ignores it, and `unlock` does not remove it).
   */
  async unlockStale(): Promise<void> {
    const dir = path.join(this.opts.repo, 'locks');
    const count = (): number => readdirSync(dir).filter((f) => FINGERPRINT.test(f)).length;
    let n = 0;
    try {
      n = count();
    } catch {
      return;
    }
    if (n === 0) return;
    await this.run(['unlock'], { mutates: true });
    let left = 0;
    try {
      left = count();
    } catch {
      // gone
    }
    if (left < n)
      this.ctx.log.warn(
        `history: removed ${n - left} stale restic lock(s) from ${this.opts.repo} (left by a run that was cut off)`,
      );
  }

  /** Proves the password opens the repository (restic cat config reads only its key). */
  async open(): Promise<void> {
    await this.run(['cat', 'config', '--no-lock'], { mutates: false });
  }

  /**
   * The data files (packs) the repository's index names, read with `restic cat index` from each
   * index file present (one superseded by another present is skipped: prune leaves none, but a
   * copy caught between them may). Needs config, keys/ and index/ only, not the data.
   */
  async indexedPacks(): Promise<Set<string>> {
    let names: string[] = [];
    try {
      names = readdirSync(path.join(this.opts.repo, 'index')).filter((n) => FINGERPRINT.test(n));
    } catch {
      return new Set();
    }
    const indexes: { id: string; packs: string[]; supersedes: string[] }[] = [];
    for (const id of names) {
      const out = await this.run(['cat', 'index', id, '--no-lock'], { mutates: false });
      const doc = parseJson<{ packs?: { id?: string }[] | null; supersedes?: string[] | null }>(
        out,
        'restic cat index',
      );
      indexes.push({
        id,
        packs: (doc?.packs ?? []).map((p) => String(p.id ?? '')).filter((p) => FINGERPRINT.test(p)),
        supersedes: doc?.supersedes ?? [],
      });
    }
    const superseded = new Set(indexes.flatMap((i) => i.supersedes));
    return new Set(indexes.filter((i) => !superseded.has(i.id)).flatMap((i) => i.packs));
  }

  async init(): Promise<void> {
    await this.run(['init'], { mutates: true });
  }

  async snapshots(): Promise<ResticSnapshot[]> {
    const out = await this.run(['snapshots'], { mutates: false });
    const list = parseJson<Partial<ResticSnapshot>[]>(out, 'restic snapshots') ?? [];
    return list
      .filter((s) => typeof s.id === 'string' && FINGERPRINT.test(s.id))
      .map((s) => ({
        id: s.id!,
        time: String(s.time ?? ''),
        tree: String(s.tree ?? ''),
        paths: s.paths ?? [],
        hostname: String(s.hostname ?? ''),
        tags: s.tags ?? [],
      }))
      .sort((a, b) => a.time.localeCompare(b.time));
  }

  /**
   * `restic backup .` from inside the tree: the snapshot's path is the tree's absolute path, which
   * is the same mount point every time, so restic finds the previous backup as parent and reads
   * only files whose size, time or inode changed. Exit 3 means some files could not be read: the
   * snapshot exists but is incomplete, which the caller must report.
   */
  async backup(
    tree: string,
    opts: { host: string; tags: string[]; onProgress?: (pct: number, bytes: number) => void },
  ): Promise<BackupSummary & { incomplete: boolean }> {
    let summary: Record<string, unknown> | null = null;
    const errors: string[] = [];
    let exit = 0;
    const out = await this.run(
      ['backup', '--host', opts.host, ...opts.tags.flatMap((t) => ['--tag', t]), '--one-file-system', '.'],
      {
        mutates: true,
        cwd: tree,
        okCodes: [0, 3],
        onLine: (line, stream) => {
          if (stream !== 'stdout') return;
          const m = parseJson<Record<string, unknown>>(line, null);
          if (!m) return;
          if (m['message_type'] === 'status' && opts.onProgress)
            opts.onProgress(Number(m['percent_done'] ?? 0) * 100, Number(m['bytes_done'] ?? 0));
          if (m['message_type'] === 'error')
            errors.push(`${String(m['item'] ?? '')}: ${JSON.stringify(m['error'])}`);
        },
      },
    );
    for (const line of out.split('\n')) {
      const m = parseJson<Record<string, unknown>>(line, null);
      if (m?.['message_type'] === 'summary') summary = m;
      if (m?.['message_type'] === 'error') exit = 3;
    }
    if (!summary) throw new VerifyError('restic backup printed no summary: the snapshot may not exist');
    for (const e of errors.slice(0, 20)) this.ctx.log.warn(`history: restic could not read ${e}`);
    const n = (k: string) => Number(summary![k] ?? 0);
    const short = String(summary['snapshot_id'] ?? '');
    const full = (await this.snapshots()).find((s) => s.id.startsWith(short));
    if (!short || !full)
      throw new VerifyError(`restic backup reported snapshot "${short}", which it does not list`);
    return {
      snapshotId: full.id,
      filesNew: n('files_new'),
      filesChanged: n('files_changed'),
      filesUnmodified: n('files_unmodified'),
      dataAdded: n('data_added'),
      totalFilesProcessed: n('total_files_processed'),
      totalBytesProcessed: n('total_bytes_processed'),
      incomplete: exit === 3 || errors.length > 0,
    };
  }

  /**
   * Which snapshots `forget --keep-*` would remove, asked with --dry-run: zshield then forgets only
   * those every target already holds, by ID (restic has no "keep these too" option).
   */
  async wouldForget(keep: { daily: number; weekly: number; monthly: number }): Promise<string[]> {
    const out = await this.run(
      [
        'forget',
        '--dry-run',
        '--keep-daily',
        String(keep.daily),
        '--keep-weekly',
        String(keep.weekly),
        '--keep-monthly',
        String(keep.monthly),
      ],
      { mutates: false },
    );
    const groups = parseJson<{ remove?: { id?: string }[] | null }[]>(out, 'restic forget') ?? [];
    return groups
      .flatMap((g) => (g.remove ?? []).map((s) => String(s.id ?? '')))
      .filter((id) => FINGERPRINT.test(id));
  }

  async forget(ids: string[]): Promise<void> {
    if (ids.length) await this.run(['forget', ...ids], { mutates: true });
  }

  async prune(): Promise<void> {
    await this.run(['prune'], { mutates: true });
  }

  /** restic's own check; `readData` reads and verifies every pack too. */
  async check(readData = false): Promise<void> {
    await this.run(['check', ...(readData ? ['--read-data'] : [])], { mutates: false });
  }

  /** Size and file count of a snapshot once restored (for restore progress). */
  async restoreSize(id: string): Promise<{ bytes: number; files: number }> {
    const out = await this.run(['stats', '--mode', 'restore-size', id], { mutates: false });
    const s = parseJson<{ total_size?: number; total_file_count?: number }>(out, 'restic stats') ?? {};
    return { bytes: Number(s.total_size ?? 0), files: Number(s.total_file_count ?? 0) };
  }

  async restore(id: string, target: string): Promise<void> {
    await this.run(['restore', id, '--target', target], { mutates: true });
  }
}

function parseJson<T>(text: string, what: string | null): T | null {
  const t = text.trim();
  if (!t) return null;
  try {
    return JSON.parse(t) as T;
  } catch {
    if (what === null) return null;
    // restic prints one JSON document, possibly after non-JSON notices: take the last line that parses.
    for (const line of t.split('\n').reverse()) {
      try {
        return JSON.parse(line) as T;
      } catch {
        // not this one
      }
    }
    throw new VerifyError(`${what}: output is not JSON`);
  }
}

/** restic's failures that are about the repository, told apart from stderr (its exit code is 1 for all). */
function classify(err: unknown, repo: string): unknown {
  if (!(err instanceof CommandError)) return err;
  const text = `${err.stderr}\n${err.stdout}`;
  if (/wrong password or no key found/i.test(text)) {
    return new RepositoryPasswordError(
      [{ where: 'history.password', message: `the repository password does not open ${repo}` }],
      { hint: 'set the password this repository was made with (zshield history init --password-stdin)' },
    );
  }
  if (
    /Is there a repository at the following location|unable to open config file|repository does not exist/i.test(
      text,
    )
  ) {
    return new NotFoundError(`no restic repository at ${repo}`, {
      hint: 'make one with zshield history init',
    });
  }
  if (/repository is already locked/i.test(text)) {
    const holder = lockHolder(text);
    return new BusyError(`restic repository ${repo} is locked by ${holder}`, {
      hint: `wait for ${holder} to finish (a lock whose process is gone is removed automatically before the next repository operation)`,
    });
  }
  if (
    /Fatal: (repository contains errors|load .* invalid data|check failed)|pack .* (contains|does not match)|ciphertext verification failed/i.test(
      text,
    )
  ) {
    return new VerifyError(`restic found damage in ${repo}: ${lastErrorLine(text)}`, { cause: err });
  }
  return err;
}

/** "process 1234 on box-a (restic backup ...)" from restic's "locked ... by PID 1234 on box-a by root". */
function lockHolder(text: string): string {
  const m = /by PID (\d+) on (\S+)/.exec(text);
  if (!m) return 'another restic process';
  let cmd = '';
  if (m[2] === hostname()) {
    try {
      cmd = readFileSync(`/proc/${m[1]}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(0, 4).join(' ');
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return `process ${m[1]} on ${m[2]}${cmd ? ` (${cmd})` : ''}`;
}

function lastErrorLine(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.find((l) => /error|invalid|fatal/i.test(l)) ?? lines.at(-1) ?? '';
}
