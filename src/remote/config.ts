import { z } from 'zod';

/**
 * The `remote` section of the config: where backups are copied off the box (the seed's backupCopy
 * ini file, as JSON). The password is never stored in clear: `password` holds the ciphertext made
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

export const remoteSchema = z
  .object({
    /** Copy after backup and image jobs (when the daemon runs them). `zshield remote copy` works either way. */
    enabled: z.boolean().default(false),
    server: hostName.nullable().default(null),
    port: z.number().int().min(1).max(65535).default(22),
    user: userName.nullable().default(null),
    /** Directory on the remote host the backups are copied into (absolute). */
    destination: absPath
      .refine((s) => !s.includes('\n') && !s.includes('\0'), 'must not contain a newline')
      .nullable()
      .default(null),
    /** The user's password, encrypted with keyFile (`zshield config edit` writes it). */
    password: z
      .string()
      .regex(
        CIPHERTEXT_PATTERN,
        'must be a password encrypted by zshield (v1:...); set it with zshield config edit',
      )
      .nullable()
      .default(null),
    /** 32 random bytes (base64) that encrypt the password; mode 0600. `zshield keygen` replaces it. */
    keyFile: absPath.default('/etc/zshield/remote.key'),
    /** An OpenSSH private key (unencrypted, mode 0600) used instead of or before the password. */
    privateKey: absPath.nullable().default(null),
    /** The remote host's key, pinned (`zshield remote trust` records it). Unset: every host key is refused. */
    hostKey: z
      .string()
      .regex(FINGERPRINT_PATTERN, 'must be an OpenSSH fingerprint, SHA256:<43 base64 characters>')
      .nullable()
      .default(null),
    /** Backups of each kind to keep, locally and remotely. `--limit` overrides it. */
    limit: z.number().int().min(1).max(1000).default(5),
    /** Upload bandwidth cap in KiB/s; null for none. `--bwlimit` overrides it. */
    bandwidthKiBps: z.number().int().min(1).nullable().default(null),
    /** Retries of a failed transfer (after the first try), with exponential backoff. */
    retries: z.number().int().min(0).max(20).default(3),
    /** Seconds to wait for the server to answer before calling it unreachable. */
    connectTimeoutSeconds: z.number().int().min(1).max(600).default(20),
    /**
     * Files already on the remote are compared with the local ones by SHA-256 (a listing shows
     * only names and sizes): each run checks the 1/verifyCycle least recently checked, so this many
     * runs check every file (7: a week of daily copies; 1: all, every run). `--verify-all` checks all.
     */
    verifyCycle: z.number().int().min(1).max(366).default(7),
    /** Local directories holding the backup files (not recursive). */
    sources: z.array(absPath).min(1).default(['/diskbackup']),
    /** Which daemon jobs are followed by a copy (when enabled). */
    after: z.array(z.enum(['backup', 'image'])).default(['backup', 'image']),
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
