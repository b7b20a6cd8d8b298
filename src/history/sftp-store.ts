import { stat } from 'node:fs/promises';
import path from 'node:path/posix';
import type { HistoryConfig, SftpTargetConfig } from '../config/history.js';
import { remoteSchema } from '../config/remote.js';
import type { Context } from '../context.js';
import { RefusedError, RemoteError, ZshieldError } from '../errors.js';
import { Connection } from '../ssh/connection.js';
import type { RemoteSession } from '../ssh/session.js';
import { endpointText, HostKeyError } from '../ssh/connect.js';
import { loadCredentials, type Target } from '../ssh/credentials.js';
import { uploadFile } from '../ssh/transfer.js';
import { downloadFile } from '../ssh/download.js';
import { Lanes } from '../ssh/lanes.js';
import type { RateLimiter } from '../ssh/progress.js';
import { remoteSha256, remoteSha256Many } from '../ssh/remote-hash.js';
import { expectedHash, kindOf, type PutResult, type RepoFile, type Store } from './repo-store.js';
import { PART_SUFFIX } from '../names/backup-files.js';

/**
 * A target reached over SFTP, with the remote copy's own pieces: its session and retry policy
 * (Connection), its credentials (the password decrypted with the key file, the host key pinned),
 * and its verified, resumable upload. The repository is `<directory>/repo`, the catalog
 * `<directory>/catalog`.
 */

/** restic spreads data over 256 folders named by the first byte of the file's hash. */
const DATA_DIR = /^[0-9a-f]{2}$/;
/** SFTP requests in flight while listing the data folders (one round trip each otherwise). */
const LIST_PARALLEL = 32;
/** Files hashed by one exec on the server (one round trip, one process for the lot). */
const HASH_BATCH = 32;
/**
 * Files up to this size are read back on their own channel rather than hashed by an exec: one or
 * two read requests take a round trip, where an exec opens a channel and starts a shell and
 * openssl (100-300 ms measured on loopback, and the config, key, index, snapshot and catalog files
 * wait for each other's rename in turn).
 */
const READ_BACK_MAX = 2 * 248 * 1024;

interface HashWanted {
  session: RemoteSession;
  file: string;
  size: number;
  resolve: (r: { sum: string; by: string }) => void;
  reject: (err: unknown) => void;
}

export class SftpStore implements Store {
  readonly label: string;
  /** A damaged file is removed before it is sent again (uploadFile never replaces a name). */
  readonly appendOnly = false;
  private readonly conn: Connection;
  private readonly repoDir: string;
  private readonly catalogDir: string;
  private readonly made = new Set<string>();
  private readonly making = new Map<string, Promise<void>>();
  /** Whether the server runs a command (null: not asked yet); without, a check reads back. */
  private readonly known: { shell: boolean | null } = { shell: null };
  /** Checks waiting for the exec in progress: the next one takes them all. */
  private readonly hashQueue: HashWanted[] = [];
  private hashing = false;
  /** One SFTP channel per file in flight: each file's round trips wait only for its own writes. */
  private readonly lanes: Lanes;

  constructor(
    private readonly ctx: Context,
    history: HistoryConfig,
    readonly cfg: SftpTargetConfig,
    private readonly limiter: RateLimiter | null = null,
  ) {
    const dir = cfg.directory.replace(/\/+$/, '') || '/';
    this.repoDir = path.join(dir, 'repo');
    this.catalogDir = path.join(dir, 'catalog');
    const target = remoteTargetOf(history, cfg);
    this.label = `${cfg.name} (${cfg.user}@${endpointText(target.endpoint)}:${dir})`;
    let credentials: ReturnType<typeof loadCredentials>;
    try {
      credentials = loadCredentials(ctx, target);
    } catch (err) {
      throw forTarget(err, cfg);
    }
    this.conn = new Connection(ctx, target, credentials, 2000);
    this.lanes = new Lanes(ctx);
    this.retry = wrapHostKey(this.conn.retry.bind(this.conn), cfg);
  }

  private readonly retry: Connection['retry'];

  async list(): Promise<RepoFile[]> {
    return this.retry(`list ${this.repoDir}`, async (s) => {
      if ((await s.isDirectory(this.repoDir)) !== true) return [];
      const out: RepoFile[] = [];
      const listDir = async (rel: string) => {
        for (const f of await listOrEmpty(s, path.join(this.repoDir, rel)))
          if (!f.name.endsWith(PART_SUFFIX) && !f.name.startsWith('.'))
            out.push({ name: rel ? `${rel}/${f.name}` : f.name, size: f.size });
      };
      await listDir('');
      for (const sub of ['keys', 'index', 'snapshots']) await listDir(sub);
      // Only the data folders that exist (one listing of data/), a few requests at a time.
      const dataDirs = (await subdirs(s, path.join(this.repoDir, 'data'))).filter((d) => DATA_DIR.test(d));
      for (let i = 0; i < dataDirs.length; i += LIST_PARALLEL)
        await Promise.all(dataDirs.slice(i, i + LIST_PARALLEL).map((d) => listDir(`data/${d}`)));
      return out.filter((f) => kindOf(f.name) !== null).sort((a, b) => a.name.localeCompare(b.name));
    });
  }

  async put(
    localPath: string,
    file: RepoFile,
    opts: { ready?: () => Promise<void> } = {},
  ): Promise<PutResult> {
    const dest = path.dirname(path.join(this.repoDir, file.name));
    const known = expectedHash(file.name);
    return this.retry(`copy ${file.name}`, (conn) =>
      this.lanes.use(conn, async (s) => {
        await this.mkdirs(s, dest);
        const r = await uploadFile({
          session: s,
          file: { name: path.basename(file.name), size: file.size, path: localPath },
          destination: dest,
          log: this.ctx.log,
          doc: this.ctx.doc,
          limiter: this.limiter,
          signal: this.ctx.signal,
          remoteHash: (session, f, size) => this.remoteHash(session, f, size),
          ...(opts.ready ? { beforeRename: opts.ready } : {}),
          // A restic file is named by its SHA-256: the server's checksum is held against the name,
          // and the local file is not hashed (twice: as it is sent and again at the end).
          ...(known !== null ? { knownSha256: known } : {}),
        });
        return { sent: r.sent, resumedFrom: r.resumedFrom };
      }),
    );
  }

  async remove(name: string): Promise<void> {
    const file = path.join(this.repoDir, name);
    await this.retry(`delete ${name}`, async (s) => {
      if ((await s.size(file)) !== null) await s.unlink(file);
    });
  }

  async sha256(file: RepoFile): Promise<string> {
    const p = path.join(this.repoDir, file.name);
    return this.retry(`check ${file.name}`, async (s) => (await this.remoteHash(s, p, file.size)).sum);
  }

  /**
   * A file's SHA-256 taken on the server. Checks asked for while one exec runs wait and go
   * together in the next (one `openssl dgst` of them all); on an SFTP-only server, and for a small
   * file on any, the file is read back, beside whatever else is in flight.
   */
  private remoteHash(
    session: RemoteSession,
    file: string,
    size: number,
  ): Promise<{ sum: string; by: string }> {
    if (this.known.shell === false) return remoteSha256(session, file, size, this.ctx.signal, this.known);
    if (size <= READ_BACK_MAX) return remoteSha256(session, file, size, this.ctx.signal, { shell: false });
    return new Promise((resolve, reject) => {
      this.hashQueue.push({ session, file, size, resolve, reject });
      void this.drainHashes();
    });
  }

  private async drainHashes(): Promise<void> {
    if (this.hashing) return;
    this.hashing = true;
    try {
      while (this.hashQueue.length) {
        const session = this.hashQueue[0]!.session.connection;
        // One connection per exec (a file's lane is one of its channels): a check asked on a
        // connection since lost goes in a later batch.
        const batch: HashWanted[] = [];
        for (let i = 0; i < this.hashQueue.length && batch.length < HASH_BATCH; )
          if (this.hashQueue[i]!.session.connection === session) batch.push(...this.hashQueue.splice(i, 1));
          else i++;
        await this.hashBatch(session, batch);
      }
    } finally {
      this.hashing = false;
    }
  }

  private async hashBatch(session: RemoteSession, batch: HashWanted[]): Promise<void> {
    let many: Awaited<ReturnType<typeof remoteSha256Many>>;
    try {
      many =
        this.known.shell === false
          ? 'no-shell'
          : await remoteSha256Many(
              session,
              batch.map((w) => w.file),
            );
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    if (many !== null && many !== 'no-shell') {
      this.known.shell = true;
      for (const [i, w] of batch.entries()) w.resolve({ sum: many.sums[i]!, by: many.by });
      return;
    }
    if (many === 'no-shell') this.known.shell = false;
    // No shell, or one of the files did not hash (gone, say): each on its own, not waited for
    // here, so a read-back runs beside the uploads and the next checks.
    for (const w of batch)
      remoteSha256(w.session, w.file, w.size, this.ctx.signal, this.known).then(w.resolve, w.reject);
  }

  async fetch(file: RepoFile, localPath: string): Promise<void> {
    await this.retry(`fetch ${file.name}`, (conn) =>
      this.lanes.use(conn, (s) => downloadFile(s, path.join(this.repoDir, file.name), localPath, file.size)),
    );
  }

  async putCatalog(localPath: string, name: string, ready?: () => Promise<void>): Promise<void> {
    const { size } = await stat(localPath);
    await this.retry(`copy catalog/${name}`, async (s) => {
      await this.mkdirs(s, this.catalogDir);
      await uploadFile({
        session: s,
        file: { name, size, path: localPath },
        destination: this.catalogDir,
        log: this.ctx.log,
        doc: this.ctx.doc,
        limiter: null,
        signal: this.ctx.signal,
        remoteHash: (session, f, n) => this.remoteHash(session, f, n),
        ...(ready ? { beforeRename: ready } : {}),
      });
    });
  }

  async fetchCatalog(name: string, localPath: string): Promise<boolean> {
    const remote = path.join(this.catalogDir, name);
    return this.retry(`fetch catalog/${name}`, async (s) => {
      if ((await s.size(remote)) === null) return false;
      await downloadFile(s, remote, localPath);
      return true;
    });
  }

  close(): void {
    this.lanes.close();
    this.conn.close();
  }

  /**
   * A directory on the target, made when missing. A folder whose parent this run already has
   * costs one request, not a walk from / (each level a round trip).
   */
  private async mkdirs(s: RemoteSession, dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    // Several uploads in flight may want the same folder: one makes it, the others wait.
    let p = this.making.get(dir);
    if (!p) {
      p = this.makeDirs(s, dir).finally(() => this.making.delete(dir));
      this.making.set(dir, p);
    }
    await p;
  }

  private async makeDirs(s: RemoteSession, dir: string): Promise<void> {
    const parent = path.dirname(dir);
    if (parent !== dir && parent !== '/' && parent !== '.') await this.mkdirs(s, parent);
    const isDir = await s.isDirectory(dir);
    if (isDir === null) {
      s.allowWrite(`mkdir ${dir}`);
      await new Promise<void>((resolve, reject) =>
        s.sftp.mkdir(dir, { mode: 0o700 }, (err) => (err ? reject(s.wrap(err, `mkdir ${dir}`)) : resolve())),
      );
      this.ctx.log.info(`remote: created ${dir} on ${s.where}`);
    } else if (!isDir) throw new RemoteError(`remote ${s.where}: ${dir} exists and is not a directory`);
    this.made.add(dir);
  }
}

/**
 * The remote copy's errors speak of its own settings (remote.hostKey and `remote trust`,
 * remote.server and remote.port, remote.user, remote.destination); for a history target they are
 * history.targets[] and its commands (`history target trust`, `history target list`).
 */
function wrapHostKey(retry: Connection['retry'], cfg: SftpTargetConfig): Connection['retry'] {
  return async (what, fn) => {
    try {
      return await retry(what, fn);
    } catch (err) {
      throw forTarget(err, cfg);
    }
  };
}

/** An error of the remote copy's code, told in the words of a history target (same class, same exit code). */
export function forTarget(err: unknown, cfg: SftpTargetConfig): unknown {
  const name = cfg.name;
  if (err instanceof HostKeyError) {
    const where = endpointText(err.endpoint);
    const fp = err.offered.fingerprint;
    return err.pinned === null
      ? new RefusedError(
          `history target ${name} (${where}) is not trusted: it offers ${err.offered.type} key ${fp}, and its hostKey is not set`,
          {
            hint: `compare it with the server's own (ssh-keygen -lf on the server), then: zshield history target trust ${name} --fingerprint ${fp}`,
          },
        )
      : new RefusedError(
          `host key of history target ${name} (${where}) has CHANGED: it offers ${err.offered.type} key ${fp}, the pinned key is ${err.pinned}; refusing to connect`,
          {
            hint: `if the server was reinstalled, check its new key out of band, then: zshield history target trust ${name} --fingerprint ${fp}; otherwise the connection may be intercepted`,
          },
        );
  }
  if (!(err instanceof ZshieldError) || !err.hint || !/\bremote\./.test(err.hint)) return err;
  const hint = /authentication failed/.test(err.message)
    ? `check the user and the login key or password of history target ${name}: zshield history target list shows them`
    : /permission denied/.test(err.message)
      ? `${cfg.user} must be able to read and write everything under ${cfg.directory} on ${cfg.server}`
      : /unreachable|cannot connect/.test(err.message)
        ? `check the server and port of history target ${name} and that the server is up: zshield history target list shows them`
        : `check history target ${name}: zshield history target list shows its settings`;
  // The hint is the one thing to change: the class (and its exit code, its retry rule) is kept.
  Object.defineProperty(err, 'hint', { value: hint, enumerable: true });
  return err;
}

/** The remote copy's Target for one history target: its settings, the history section's key file. */
export function remoteTargetOf(history: HistoryConfig, t: SftpTargetConfig): Target {
  const remote = remoteSchema.parse({
    server: t.server,
    port: t.port,
    user: t.user,
    destination: t.directory,
    password: t.password,
    keyFile: history.keyFile,
    privateKey: t.privateKey,
    hostKey: t.hostKey,
    retries: history.retries,
    connectTimeoutSeconds: history.connectTimeoutSeconds,
  });
  return { endpoint: { host: t.server, port: t.port }, user: t.user, destination: t.directory, remote };
}

async function listOrEmpty(s: RemoteSession, dir: string): Promise<{ name: string; size: number }[]> {
  try {
    return await s.list(dir);
  } catch (err) {
    if (/no such file/.test((err as Error).message)) return [];
    throw err;
  }
}

/** Names of the directories in a remote directory ([] when it does not exist). */
async function subdirs(s: RemoteSession, dir: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    s.sftp.readdir(dir, (err, list) => {
      if (!err) resolve(list.filter((e) => e.attrs.isDirectory()).map((e) => e.filename));
      else if ((err as { code?: number }).code === 2) resolve([]);
      else reject(s.wrap(err, `list ${dir}`));
    }),
  );
}
