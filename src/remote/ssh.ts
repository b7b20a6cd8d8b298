import { createHash } from 'node:crypto';
import type { Client, ClientChannel, ConnectConfig, SFTPWrapper } from 'ssh2';
import { InterruptedError, RefusedError, RemoteError, type ZshieldError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { FileEntry } from './backups.js';
import type { Writes } from '../system/writes.js';

type Ssh2 = typeof import('ssh2');
let loaded: Promise<Ssh2> | null = null;
/**
 * ssh2, loaded on first use. At load it instantiates a WebAssembly module with 16 MiB of memory
 * (its poly1305), which every command that never connects (status, the idle daemon) would carry.
 * ssh2 is CommonJS whose exports Node's ESM loader cannot all name statically (`utils` is not
 * found under plain Node ESM): its members are taken from the module object.
 */
function ssh2(): Promise<Ssh2> {
  loaded ??= import('ssh2').then((m) => (m as { default?: Ssh2 }).default ?? m);
  return loaded;
}

/**
 * The SSH side: one ssh2 connection with its SFTP channel, in this process. ssh2 rather than the
 * scp or sftp programs because the password then never leaves this process (no argv, no
 * environment, no askpass helper) and because resuming, verifying and renaming need SFTP requests
 * that scp has no words for.
 */

export interface Endpoint {
  host: string;
  port: number;
}

export const endpointText = (e: Endpoint) =>
  e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;

export interface Credentials {
  user: string;
  /** Clear text, in memory only. */
  password: string | null;
  /**
   * An OpenSSH private key, read (mode checked). Parsed by parsePrivateKey where the settings are
   * checked (credentials.ts checkCredentials) and again before each connection.
   */
  privateKey: Buffer | null;
}

/** A failure worth another try after a pause (the link, not the settings). */
export class TransientRemoteError extends RemoteError {
  /** The SFTP status code the server answered with, when it answered (4 is the generic "Failure"). */
  sftpCode: number | null = null;
}

/** What `statvfs@openssh.com` says about the file system holding a path. */
export interface RemoteSpace {
  /** Bytes an unprivileged user may still write. */
  availableBytes: number;
  /** Files (inodes) an unprivileged user may still create (Infinity where they are not counted). */
  availableFiles: number;
}

/** The remote host's key is not the pinned one (or none is pinned). Never retried. */
export class HostKeyError extends RefusedError {
  constructor(
    readonly endpoint: Endpoint,
    readonly offered: HostKeyInfo,
    readonly pinned: string | null,
  ) {
    const where = endpointText(endpoint);
    const message =
      pinned === null
        ? `remote host ${where} is not trusted: it offers ${offered.type} key ${offered.fingerprint}, and remote.hostKey is not set`
        : `remote host key for ${where} has CHANGED: it offers ${offered.type} key ${offered.fingerprint}, the pinned key is ${pinned}; refusing to connect`;
    const hint =
      pinned === null
        ? `compare it with the server's own (ssh-keygen -lf /etc/ssh/ssh_host_${offered.type.replace(/^ssh-/, '')}_key.pub on the server), then: zshield remote trust --fingerprint ${offered.fingerprint}`
        : 'if the server was reinstalled, check its new key out of band and run zshield remote trust; otherwise the connection may be intercepted';
    super(message, { hint });
  }
}

export interface HostKeyInfo {
  /** `SHA256:...` as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** The key's algorithm (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`). */
  type: string;
}

/** OpenSSH's fingerprint of a public key blob: unpadded base64 of its SHA-256. */
export function hostKeyInfo(blob: Buffer): HostKeyInfo {
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  // The blob starts with the algorithm name as an SSH string (uint32 length, bytes).
  let type = 'unknown';
  if (blob.length >= 4) {
    const n = blob.readUInt32BE(0);
    if (n > 0 && n < 64 && blob.length >= 4 + n) type = blob.subarray(4, 4 + n).toString('latin1');
  }
  return { fingerprint, type };
}

/**
 * Parse an OpenSSH private key, or say clearly why it cannot be used (without its content).
 * `what` names it in the message: its file, or `for user@host`.
 */
export async function parsePrivateKey(data: Buffer, what: string): Promise<Buffer> {
  const parsed = (await ssh2()).utils.parseKey(data);
  if (parsed instanceof Error) {
    const encrypted = /passphrase|encrypted/i.test(parsed.message);
    throw new RefusedError(
      encrypted
        ? `private key ${what} is protected by a passphrase, which zshield cannot enter unattended`
        : `private key ${what} is not a private key ssh2 can use (${parsed.message})`,
      {
        hint: encrypted
          ? `remove the passphrase (ssh-keygen -p -N '' -f ${what.startsWith('for ') ? 'FILE' : what}) or use a dedicated key`
          : 'use an OpenSSH or PEM private key (ed25519, ecdsa or rsa)',
      },
    );
  }
  return data;
}

export interface ConnectOptions {
  endpoint: Endpoint;
  credentials: Credentials;
  /** The pinned host key; null refuses every key (see HostKeyError). */
  hostKey: string | null;
  timeoutMs: number;
  log: Logger;
  signal?: AbortSignal;
  /** The run's right to write: every SFTP call that changes the server is refused in a dry run. */
  writes: Writes;
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

/** An open, authenticated connection with its SFTP channel. */
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
  ) {
    client.on('error', (err) => {
      this.lostReason = err.message;
      log.debug(`remote: connection error: ${err.message}`);
    });
    client.on('close', () => {
      this.closed = true;
      this.lostReason ??= 'connection closed';
    });
  }

  /** The connection is gone: every further request fails. */
  get lost(): boolean {
    return this.closed || this.lostReason !== null;
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
    this.client.end();
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
      if (this.closed) {
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
      if (this.closed) {
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

async function connectClient(opts: ConnectOptions): Promise<Client> {
  const { endpoint, credentials, hostKey, log, signal } = opts;
  const { Client } = await ssh2();
  const where = `${credentials.user}@${endpointText(endpoint)}`;
  return new Promise<Client>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new InterruptedError('interrupted before connecting'));
      return;
    }
    const client = new Client();
    let offered: HostKeyInfo | null = null;
    let settled = false;
    const finish = (err: ZshieldError | null) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) {
        client.end();
        reject(err);
      } else resolve(client);
    };
    const onAbort = () => finish(new InterruptedError(`interrupted while connecting to ${where}`));
    signal?.addEventListener('abort', onAbort);
    client.on('ready', () => finish(null));
    // Whatever ends the handshake (an error, or the socket closing first), a key we refused is the
    // reason, and it must not be reported as something a retry could fix.
    const refusedKey = () =>
      offered && (hostKey === null || offered.fingerprint !== hostKey)
        ? new HostKeyError(endpoint, offered, hostKey)
        : null;
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      finish(refusedKey() ?? classifyConnectError(err, where, credentials, opts.timeoutMs));
    });
    client.on('close', () =>
      finish(refusedKey() ?? new TransientRemoteError(`remote ${where}: connection closed during login`)),
    );
    const methods: ('publickey' | 'password')[] = [];
    if (credentials.privateKey) methods.push('publickey');
    if (credentials.password !== null) methods.push('password');
    const config: ConnectConfig = {
      host: endpoint.host,
      port: endpoint.port,
      username: credentials.user,
      readyTimeout: opts.timeoutMs,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      hostVerifier: (blob: Buffer) => {
        offered = hostKeyInfo(blob);
        const ok = hostKey !== null && offered.fingerprint === hostKey;
        log.debug(
          `remote: ${endpointText(endpoint)} offers ${offered.type} ${offered.fingerprint} (${ok ? 'pinned' : 'NOT pinned'})`,
        );
        return ok;
      },
      authHandler: methods,
    };
    if (credentials.privateKey) config.privateKey = credentials.privateKey;
    if (credentials.password !== null) config.password = credentials.password;
    try {
      client.connect(config);
    } catch (err) {
      finish(new RemoteError(`remote ${where}: cannot connect: ${(err as Error).message}`));
    }
  });
}

function classifyConnectError(
  err: Error & { level?: string; code?: string },
  where: string,
  credentials: Credentials,
  timeoutMs: number,
): ZshieldError {
  if (err.level === 'client-authentication') {
    const how = [
      credentials.privateKey ? 'private key' : null,
      credentials.password !== null ? 'password' : null,
    ]
      .filter(Boolean)
      .join(' and ');
    return new RemoteError(`remote ${where}: authentication failed (the server refused the ${how})`, {
      hint: 'check remote.user, and the password (zshield config edit) or remote.privateKey',
    });
  }
  if (err.level === 'client-timeout') {
    return new TransientRemoteError(
      `remote ${where}: unreachable: no SSH answer within ${Math.round(timeoutMs / 1000)} s`,
    );
  }
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused (no SSH server on that port)',
    EHOSTUNREACH: 'no route to host',
    ENETUNREACH: 'network unreachable',
    ETIMEDOUT: 'connection timed out',
    ENOTFOUND: 'host name not found',
    EAI_AGAIN: 'host name lookup failed',
    ECONNRESET: 'connection reset',
  };
  const reason = (err.code && reasons[err.code]) || err.message;
  return new TransientRemoteError(`remote ${where}: unreachable: ${reason}`, {
    hint: 'check remote.server and remote.port, and that the server is up',
  });
}

/**
 * The host key a server offers, without logging in (for `zshield remote trust`): the verifier
 * records the key and refuses it, which ends the handshake before any credential is sent.
 */
export async function probeHostKey(endpoint: Endpoint, timeoutMs: number): Promise<HostKeyInfo> {
  const { Client } = await ssh2();
  return new Promise<HostKeyInfo>((resolve, reject) => {
    const client = new Client();
    let offered: HostKeyInfo | null = null;
    let settled = false;
    const finish = (v: HostKeyInfo | ZshieldError) => {
      if (settled) return;
      settled = true;
      client.end();
      if (v instanceof Error) reject(v);
      else resolve(v);
    };
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (offered) finish(offered);
      else
        finish(
          classifyConnectError(
            err,
            endpointText(endpoint),
            { user: '', password: null, privateKey: null },
            timeoutMs,
          ),
        );
    });
    client.on('close', () =>
      finish(
        offered ??
          new TransientRemoteError(
            `remote ${endpointText(endpoint)}: connection closed before the key exchange`,
          ),
      ),
    );
    client.on('ready', () =>
      finish(new RemoteError('internal: a server was accepted without a host key check')),
    );
    client.connect({
      host: endpoint.host,
      port: endpoint.port,
      username: 'zshield-hostkey-probe',
      readyTimeout: timeoutMs,
      hostVerifier: (blob: Buffer) => {
        offered = hostKeyInfo(blob);
        return false;
      },
      authHandler: ['none'],
    });
  });
}
