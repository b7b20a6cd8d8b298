// An open, authenticated session and its SFTP channel: listing, writing, renaming, removing, the
// server's free space and one exec at a time (the connect itself is connect.ts).
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { RemoteError, type ZshieldError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { FileEntry } from './files.js';
import type { Writes } from '../system/writes.js';
import {
  type ConnectOptions,
  connectClient,
  type Endpoint,
  endpointText,
  TransientRemoteError,
} from './connect.js';

/** What `statvfs@openssh.com` says about the file system holding a path. */
export interface RemoteSpace {
  /** Bytes an unprivileged user may still write. */
  availableBytes: number;
  /** Files (inodes) an unprivileged user may still create (Infinity where they are not counted). */
  availableFiles: number;
}

interface SftpStatusError extends Error {
  code?: number | string;
}

// SFTP status codes (draft-ietf-secsh-filexfer-02) that describe the request, not the link.
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;
/**
 * The generic status: OpenSSH's sftp-server has no code for ENOSPC (or EDQUOT, EIO) and answers
 * "Failure" for all of them, so this alone cannot tell a full disk from anything else.
 */
export const SFTP_FAILURE = 4;

/**
 * Bytes per SFTP write (and read-back) request: just under OpenSSH's 256 KiB packet limit (ssh2 splits a request
 * larger than the server's limit, for other servers). Measured on loopback: 248 KiB requests move
 * about a quarter faster than 64 KiB ones, ssh2's per-packet work being the bottleneck.
 */
export const WRITE_BYTES = 248 * 1024;

/**
 * An open, authenticated connection with its SFTP channel; or a lane: another SFTP channel of the
 * same connection (its own sftp-server on the server), so one file's requests do not queue behind
 * another's megabytes of writes.
 */
export class RemoteSession {
  private closed = false;
  private lostReason: string | null = null;

  private constructor(
    private readonly client: Client,
    readonly sftp: SFTPWrapper,
    readonly endpoint: Endpoint,
    readonly user: string,
    private readonly log: Logger,
    private readonly writes: Writes,
    /** The session whose connection this lane shares; null for the connection's own session. */
    private readonly parent: RemoteSession | null = null,
  ) {
    if (parent !== null) {
      // A lane lives and dies with its connection, and alone when its channel ends.
      sftp.on('close', () => {
        this.closed = true;
        this.lostReason ??= 'SFTP channel closed';
      });
      return;
    }
    client.on('error', (err) => {
      this.lostReason = err.message;
      log.debug(`remote: connection error: ${err.message}`);
    });
    client.on('close', () => {
      this.closed = true;
      this.lostReason ??= 'connection closed';
    });
  }

  /** The session that owns the connection (itself, or a lane's parent). */
  get connection(): RemoteSession {
    return this.parent ?? this;
  }

  /** Another SFTP channel on this connection (closed by close(), or with the connection). */
  async lane(): Promise<RemoteSession> {
    const owner = this.connection;
    const sftp = await owner.call<SFTPWrapper>('open an SFTP channel', (cb) => owner.client.sftp(cb));
    return new RemoteSession(owner.client, sftp, owner.endpoint, owner.user, owner.log, owner.writes, owner);
  }

  /** The connection (or a lane's channel) is gone: every further request fails. */
  get lost(): boolean {
    return this.closed || this.lostReason !== null || (this.parent?.lost ?? false);
  }

  get where(): string {
    return `${this.user}@${endpointText(this.endpoint)}`;
  }

  static async open(opts: ConnectOptions): Promise<RemoteSession> {
    const client = await connectClient(opts);
    try {
      const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
        client.sftp((err, s) => (err ? reject(err) : resolve(s))),
      );
      return new RemoteSession(client, sftp, opts.endpoint, opts.credentials.user, opts.log, opts.writes);
    } catch (err) {
      client.end();
      throw new RemoteError(
        `remote ${opts.credentials.user}@${endpointText(opts.endpoint)}: SFTP is not available (${(err as Error).message})`,
        { hint: 'the server needs an sftp subsystem (Subsystem sftp internal-sftp in sshd_config)' },
      );
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.parent === null) this.client.end();
    else this.sftp.end();
  }

  /** Turn an SFTP failure into a typed error that says whether another try can help. */
  wrap(err: unknown, what: string): ZshieldError {
    const e = err as SftpStatusError;
    const detail = e?.message ?? String(err);
    if (e?.code === SFTP_PERMISSION_DENIED) {
      return new RemoteError(`remote ${this.where}: permission denied: ${what}`, {
        hint: `${this.user} needs write permission on remote.destination`,
      });
    }
    if (e?.code === SFTP_NO_SUCH_FILE) return new RemoteError(`remote ${this.where}: no such file: ${what}`);
    const t = new TransientRemoteError(
      `remote ${this.where}: ${what} failed (${this.lost ? `connection lost: ${this.lostReason ?? 'closed'}` : detail})`,
    );
    if (!this.lost && typeof e?.code === 'number') t.sftpCode = e.code;
    return t;
  }

  /**
   * Free space where `dir` lives, from OpenSSH's statvfs@openssh.com; null when the server does
   * not offer it (other SFTP servers), so callers go on without the check rather than refuse.
   */
  async space(dir: string): Promise<RemoteSpace | null> {
    type N = number | bigint;
    type Info = { f_frsize: N; f_bavail: N; f_files: N; f_favail: N };
    try {
      const info = await this.call<Info>(`statvfs ${dir}`, (cb) => this.sftp.ext_openssh_statvfs(dir, cb));
      return {
        availableBytes: Number(info.f_frsize) * Number(info.f_bavail),
        // File systems that make inodes as needed (btrfs) report 0 of 0: no limit, not none left.
        availableFiles: Number(info.f_files) > 0 ? Number(info.f_favail) : Number.POSITIVE_INFINITY,
      };
    } catch (err) {
      if (this.closed || this.lost) throw err;
      // ssh2 throws "Server does not support this extended request" before sending anything. A
      // destination not made yet (a dry run) has nothing to tell either.
      if (/not support/i.test((err as Error).message)) return null;
      if (err instanceof RemoteError && /no such file/.test(err.message)) return null;
      throw err;
    }
  }

  private call<T>(
    what: string,
    fn: (cb: (err: Error | undefined | null, v?: T) => void) => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed || this.parent?.closed) {
        reject(this.wrap(new Error('closed'), what));
        return;
      }
      try {
        fn((err, v) => (err ? reject(this.wrap(err, what)) : resolve(v as T)));
      } catch (err) {
        reject(this.wrap(err, what));
      }
    });
  }

  /** Size of a file, or null when it does not exist. */
  async size(file: string): Promise<number | null> {
    try {
      const st = await this.call<{ size: number }>(`stat ${file}`, (cb) => this.sftp.stat(file, cb));
      return st.size;
    } catch (err) {
      if (err instanceof RemoteError && /no such file/.test(err.message)) return null;
      throw err;
    }
  }

  async isDirectory(dir: string): Promise<boolean | null> {
    try {
      const st = await this.call<{ isDirectory(): boolean }>(`stat ${dir}`, (cb) => this.sftp.stat(dir, cb));
      return st.isDirectory();
    } catch (err) {
      if (err instanceof RemoteError && /no such file/.test(err.message)) return null;
      throw err;
    }
  }

  /** Regular files in a directory (names and sizes). */
  async list(dir: string): Promise<FileEntry[]> {
    const entries = await this.call<{ filename: string; attrs: { size: number; isFile(): boolean } }[]>(
      `list ${dir}`,
      (cb) => this.sftp.readdir(dir, cb),
    );
    return entries
      .filter((e) => e.attrs.isFile())
      .map((e) => ({ name: e.filename, size: e.attrs.size }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Before any call that changes the server (mkdir, delete, rename, a write): DryRunError in a dry
   * run. For code that calls `sftp` directly (history's store), the same guard.
   */
  allowWrite(what: string): void {
    this.writes.allow(`${what} on ${this.where}`);
  }

  /** mkdir -p, with new directories 0700 (the backups are a copy of the system). */
  async mkdirs(dir: string): Promise<void> {
    const parts = dir.split('/').filter(Boolean);
    let cur = '';
    for (const p of parts) {
      cur += `/${p}`;
      const isDir = await this.isDirectory(cur);
      if (isDir === true) continue;
      if (isDir === false)
        throw new RemoteError(`remote ${this.where}: ${cur} exists and is not a directory`);
      this.allowWrite(`mkdir ${cur}`);
      await this.call(`mkdir ${cur}`, (cb) => this.sftp.mkdir(cur, { mode: 0o700 }, cb));
      this.log.info(`remote: created ${cur} on ${this.where}`);
    }
  }

  async unlink(file: string): Promise<void> {
    this.allowWrite(`delete ${file}`);
    await this.call(`delete ${file}`, (cb) => this.sftp.unlink(file, cb));
  }

  /**
   * Rename over an existing file atomically. Plain SFTP v3 rename fails when the target exists;
   * OpenSSH's posix-rename@openssh.com is rename(2). Without it: remove, then rename (the only
   * window where the name is absent, never one where it names a partial file).
   */
  async rename(from: string, to: string): Promise<void> {
    this.allowWrite(`rename ${from} to ${to}`);
    try {
      await this.call(`rename ${from}`, (cb) => this.sftp.ext_openssh_rename(from, to, cb));
      return;
    } catch (err) {
      if (!(err instanceof TransientRemoteError) || this.closed || !/not support/i.test(err.message))
        throw err;
    }
    if ((await this.size(to)) !== null) await this.unlink(to);
    await this.call(`rename ${from}`, (cb) => this.sftp.rename(from, to, cb));
  }

  async open(file: string, flags: 'r' | 'r+' | 'w'): Promise<Buffer> {
    if (flags !== 'r') this.allowWrite(`open ${file} for writing`);
    return this.call<Buffer>(`open ${file}`, (cb) => this.sftp.open(file, flags, { mode: 0o600 }, cb));
  }

  async closeHandle(handle: Buffer, file: string): Promise<void> {
    await this.call(`close ${file}`, (cb) => this.sftp.close(handle, cb));
  }

  /** fsync on the server when it offers fsync@openssh.com: a renamed file must be on its disk. */
  async fsync(handle: Buffer, file: string): Promise<void> {
    try {
      await this.call(`fsync ${file}`, (cb) => this.sftp.ext_openssh_fsync(handle, cb));
    } catch (err) {
      if (this.closed || !/not support/i.test((err as Error).message)) throw err;
    }
  }

  write(handle: Buffer, buf: Buffer, position: number, file: string): Promise<void> {
    this.allowWrite(`write ${file}`);
    return this.call(`write ${file}`, (cb) => this.sftp.write(handle, buf, 0, buf.length, position, cb));
  }

  read(handle: Buffer, buf: Buffer, position: number, file: string): Promise<number> {
    return this.call<number>(`read ${file}`, (cb) =>
      this.sftp.read(handle, buf, 0, buf.length, position, (err, n) => cb(err, n)),
    );
  }

  /**
   * Run a command on the remote. The SSH protocol has no argument vector: an exec request is one
   * string that the user's login shell parses. This is the one place zshield hands anything to a
   * shell, and only what quoteForShell() made of names zshield itself validated.
   */
  exec(command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      if (this.closed || this.parent?.closed) {
        reject(this.wrap(new Error('closed'), 'exec'));
        return;
      }
      this.client.exec(command, (err: Error | undefined, stream: ClientChannel) => {
        if (err) {
          reject(this.wrap(err, 'exec'));
          return;
        }
        // Nothing is sent on stdin: close it, so a command that reads it (or an account whose
        // ForceCommand is internal-sftp) ends instead of waiting.
        stream.end();
        let stdout = '';
        let stderr = '';
        let code: number | null = null;
        stream.on('data', (d: Buffer) => {
          if (stdout.length < 1 << 20) stdout += d.toString();
        });
        stream.stderr.on('data', (d: Buffer) => {
          if (stderr.length < 1 << 20) stderr += d.toString();
        });
        stream.on('exit', (c: number | null) => {
          code = c;
        });
        stream.on('close', () => resolve({ code, stdout, stderr }));
      });
    });
  }
}

/** Single-quote a string for a POSIX shell: 'it'\''s'. */
export function quoteForShell(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
