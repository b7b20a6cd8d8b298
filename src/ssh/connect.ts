// Opening an SSH connection: the endpoint and credentials, the pinned host key checked at the
// handshake, a failure told apart (the link: worth another try; the settings: not), and the host
// key probe `remote trust` and `history target trust` show before pinning.
import { createHash } from 'node:crypto';
import type { Client, ConnectConfig } from 'ssh2';
import { InterruptedError, RefusedError, RemoteError, type ZshieldError } from '../errors.js';
import type { Logger } from '../log/logger.js';
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

export async function connectClient(opts: ConnectOptions): Promise<Client> {
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
    // SFTP is request and answer: with Nagle's algorithm on, a small request (a stat, a rename,
    // the last write of a file) waits for the server's delayed ACK, 40 ms each (measured: every
    // rename of a replication took 43 ms on loopback, a 5 KiB upload 176 ms). OpenSSH's own
    // clients set TCP_NODELAY too.
    client.on('connect', () => client.setNoDelay(true));
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
