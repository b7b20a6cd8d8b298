import * as z from 'zod';

/**
 * The `remote` section of the config: where backups are copied off the box (server, user,
 * destination, password or key). The password is never stored in clear: `password` holds the ciphertext made
 * by `zshield config edit` (see secrets.ts), readable only with the key file.
 */

const absPath = z.string().startsWith('/', 'must be an absolute path');

// A host name (RFC 1123 labels) or an IPv4/IPv6 address. No user@ or :port here: those have their
// own settings, and a stray one would otherwise be resolved as part of the name.
const hostName = z
  .string()
  .min(1)
  .max(253)
  .refine(
    (s) =>
      /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
        s,
      ) ||
      /^\d{1,3}(\.\d{1,3}){3}$/.test(s) ||
      (/^[0-9A-Fa-f:.]+$/.test(s) && s.includes(':')),
    'must be a host name or an IP address (no user@, no :port: those are remote.user and remote.port)',
  );

// POSIX portable user names, plus the dot some directories use.
const userName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, 'must be a user name (letters, digits, _ . -)');

/** `v1:<key id>:<base64>`; see secrets.ts. */
export const CIPHERTEXT_PATTERN = /^v1:[0-9a-f]{8}:[A-Za-z0-9+/]+={0,2}$/;

/** An OpenSSH SHA256 fingerprint as `ssh-keygen -l` prints it. */
export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** A pinned host key: an OpenSSH SHA256 fingerprint. */
export const hostKeyFingerprint = z
  .string()
  .regex(FINGERPRINT_PATTERN, 'must be an OpenSSH fingerprint, SHA256:<43 base64 characters>');

/**
 * An SSH server zshield logs in to, every field required: the one definition behind history's
 * SFTP targets and the recovery file's target (the remote section below allows them unset until
 * `config edit` fills them, from the same validators).
 */
export const sshServerSchema = z.object({
  server: hostName.describe('host name or IP address of the SSH server'),
  port: z.number().int().min(1).max(65535).default(22).describe('SSH port'),
  user: userName.describe('login user'),
  hostKey: hostKeyFingerprint.describe("the server's host key, pinned (SHA256:...)"),
});

/**
 * How an SSH transfer retries and how long it waits for an answer: the same settings, the same
 * bounds, for the remote copy and for each history replication. `whom` names who must answer.
 */
export function transferSettings(whom: string) {
  return {
    retries: z
      .number()
      .int()
      .min(0)
      .max(20)
      .default(3)
      .describe('retries of a failed transfer (after the first try), with exponential backoff'),
    connectTimeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(600)
      .default(20)
      .describe(`seconds to wait for ${whom} to answer before calling it unreachable`),
  };
}

export const remoteSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        "copy after the daemon's backup and image jobs (those in after); `zshield remote copy` works either way",
      ),
    server: hostName.nullable().default(null).describe('the remote host: a host name or an IP address'),
    port: z.number().int().min(1).max(65535).default(22).describe("the remote host's SSH port"),
    user: userName.nullable().default(null).describe('the user zshield logs in as on the remote host'),
    destination: absPath
      .refine((s) => !s.includes('\n') && !s.includes('\0'), 'must not contain a newline')
      .nullable()
      .default(null)
      .describe('directory on the remote host the backups are copied into (absolute)'),
    password: z
      .string()
      .regex(
        CIPHERTEXT_PATTERN,
        'must be a password encrypted by zshield (v1:...); set it with zshield config edit',
      )
      .nullable()
      .default(null)
      .describe(
        "the user's password, encrypted with keyFile (v1:...; `zshield config edit` writes it, never in clear); the config file must then be mode 0600",
      ),
    keyFile: absPath
      .default('/etc/zshield/remote.key')
      .describe(
        '32 random bytes (base64) that encrypt the password, mode 0600; `zshield keygen` replaces it',
      ),
    privateKey: absPath
      .nullable()
      .default(null)
      .describe(
        'an OpenSSH private key (unencrypted, mode 0600) for key login, tried before the password (either is enough)',
      ),
    hostKey: hostKeyFingerprint
      .nullable()
      .default(null)
      .describe(
        "the remote host's key fingerprint, pinned (`zshield remote trust` records it); null: every host key is refused",
      ),
    limit: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(5)
      .describe('backups of each kind to keep, locally and remotely; `--limit` wins over it'),
    bandwidthKiBps: z
      .number()
      .int()
      .min(1)
      .nullable()
      .default(null)
      .describe('upload bandwidth cap in KiB/s, null for none; `--bwlimit` wins over it'),
    ...transferSettings('the server'),
    verifyCycle: z
      .number()
      .int()
      .min(1)
      .max(366)
      .default(7)
      .describe(
        'files already on the remote are compared with the local ones by SHA-256: each run checks the 1/verifyCycle least recently checked, so this many runs check every file (7: a week of daily copies; 1: all, every run); `--verify-all` checks all',
      ),
    sources: z
      .array(absPath)
      .min(1)
      .default(['/diskbackup'])
      .describe('local directories holding the backup files (not recursive)'),
    after: z
      .array(z.enum(['backup', 'image']))
      .default(['backup', 'image'])
      .describe('which daemon jobs are followed by a copy (when enabled)'),
  })
  .strict();

export type RemoteConfig = z.output<typeof remoteSchema>;

/** The settings a copy cannot go without, or a list of what is missing (as config paths). */
export function missingSettings(r: RemoteConfig): string[] {
  const missing: string[] = [];
  if (!r.server) missing.push('remote.server');
  if (!r.user) missing.push('remote.user');
  if (!r.destination) missing.push('remote.destination');
  if (!r.password && !r.privateKey) missing.push('remote.password or remote.privateKey');
  return missing;
}
