import { z } from 'zod';
import { CIPHERTEXT_PATTERN, FINGERPRINT_PATTERN } from '../remote/config.js';
import { parseSize, type SizeSpec } from './size.js';

/**
 * The `history` section of the config: a deduplicating history of lv-root's file tree in a local
 * restic repository, replicated file by file to several targets, and the signed catalog of its
 * fingerprints (the seed's venti, ventiprog and rootscore archive).
 */

const absPath = z
  .string()
  .startsWith('/', 'must be an absolute path')
  .refine((s) => !s.includes('\n') && !s.includes('\0'), 'must not contain a newline');

const sizeSpec = z.union([z.string(), z.number()]).transform((v, ctx): SizeSpec => {
  const r = parseSize(v, true);
  if (typeof r === 'string') {
    ctx.addIssue({ code: 'custom', message: r });
    return z.NEVER;
  }
  return r;
});

// Same rules as remote.server / remote.user (kept short here: the remote schema explains them).
const hostName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9.:-]+$/, 'must be a host name or an IP address (no user@, no :port)');
const userName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, 'must be a user name');
const ciphertext = z
  .string()
  .regex(CIPHERTEXT_PATTERN, 'must be a secret encrypted by zshield (v1:...); see zshield history init');
const targetName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be a short name (letters, digits, _ . -)');

/**
 * One place the repository is replicated to. Only SFTP today; the `type` field is where an
 * S3-compatible store would join (its own fields, the same Store interface in store.ts).
 */
export const sftpTargetSchema = z
  .object({
    name: targetName,
    type: z.literal('sftp').default('sftp'),
    server: hostName,
    port: z.number().int().min(1).max(65535).default(22),
    user: userName,
    /** The login password, encrypted with history.keyFile. */
    password: ciphertext.nullable().default(null),
    /** An OpenSSH private key (unencrypted, mode 0600). */
    privateKey: absPath.nullable().default(null),
    /** The server's host key, pinned; unset refuses every key. */
    hostKey: z
      .string()
      .regex(FINGERPRINT_PATTERN, 'must be an OpenSSH fingerprint, SHA256:...')
      .nullable()
      .default(null),
    /** Directory on the server: the repository goes in `<directory>/repo`, the catalog in `<directory>/catalog`. */
    directory: absPath,
  })
  .strict()
  .refine((t) => t.password !== null || t.privateKey !== null, 'needs a password or a privateKey');

export type SftpTargetConfig = z.output<typeof sftpTargetSchema>;

export const historySchema = z
  .object({
    /** The daemon takes a history backup (and replicates) after the daily backup. */
    enabled: z.boolean().default(false),
    /**
     * The local repository, the catalog, the per-target state and the catalog's signing key live
     * here: on a volume other than lv-root (lv-data by default), so a rollback erases none of them.
     */
    dir: absPath.default('/data/zshield/history'),
    /** The repository password, encrypted with keyFile (`zshield history init` writes it). */
    password: ciphertext.nullable().default(null),
    /** 32 random bytes (base64, mode 0600) that encrypt the secrets of this section. */
    keyFile: absPath.default('/etc/zshield/history.key'),
    /** The catalog's public key (`ed25519:...`), pinned: `history init` writes it, `status` prints it. */
    publicKey: z
      .string()
      .regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, 'must be ed25519:<base64>')
      .nullable()
      .default(null),
    /** temporary: a snapshot made for the take (the tree of now); snap0: the latest restore point. */
    source: z.enum(['temporary', 'snap0']).default('temporary'),
    tempSnapshotSize: sizeSpec.default({ kind: 'percent', percent: 20 }),
    /**
     * Where the snapshot is mounted (read-only, noload): the same path every time, since restic
     * finds a backup's parent by its paths and reads only changed files when it has one.
     */
    mountPoint: absPath.default('/run/zshield/history-root'),
    /** restic's cache: on a tmpfs, so a read-only root is never written. */
    cacheDir: absPath.default('/run/zshield/restic-cache'),
    /** restic forget --keep-daily/--keep-weekly/--keep-monthly. */
    keep: z
      .object({
        daily: z.number().int().min(0).max(1000).default(7),
        weekly: z.number().int().min(0).max(1000).default(4),
        monthly: z.number().int().min(0).max(1000).default(6),
      })
      .strict()
      .prefault({}),
    targets: z.array(sftpTargetSchema).default([]),
    /** Share of each target's files checked by hash on every replication (all of them over 100/N runs). */
    verifyPercent: z.number().min(0).max(100).default(10),
    retries: z.number().int().min(0).max(20).default(3),
    connectTimeoutSeconds: z.number().int().min(1).max(600).default(20),
  })
  .strict()
  .superRefine((h, ctx) => {
    const seen = new Set<string>();
    h.targets.forEach((t, i) => {
      if (seen.has(t.name))
        ctx.addIssue({ code: 'custom', path: ['targets', i, 'name'], message: 'used twice' });
      seen.add(t.name);
    });
  });

export type HistoryConfig = z.output<typeof historySchema>;
