import { z } from 'zod';
import { NotFoundError } from '../errors.js';
import { CIPHERTEXT_PATTERN, sshServerSchema, transferSettings } from './remote.js';
import { parseSize, type SizeSpec } from './size.js';

/**
 * The `history` section of the config: a deduplicating history of lv-root's file tree in a local
 * restic repository, replicated file by file to several targets, and the signed catalog of its
 * fingerprints, the list of what can be restored.
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

const ciphertext = z
  .string()
  .regex(CIPHERTEXT_PATTERN, 'must be a secret encrypted by zshield (v1:...); see zshield history init');
const targetName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be a short name (letters, digits, _ . -)');

/**
 * One place the repository is replicated to. Only SFTP today; the `type` field is where an
 * S3-compatible store would join (its own fields, the same Store interface in history/repo-store.ts).
 */
export const sftpTargetSchema = sshServerSchema
  .extend({
    name: targetName.describe('a short name for messages, status and the catalog'),
    type: z.literal('sftp').default('sftp').describe('sftp (an S3-compatible store is a later type)'),
    server: sshServerSchema.shape.server.describe('host name or IP address of the SFTP server'),
    password: ciphertext
      .nullable()
      .default(null)
      .describe('the login password, encrypted with history.keyFile'),
    privateKey: absPath.nullable().default(null).describe('an OpenSSH private key (unencrypted, mode 0600)'),
    hostKey: sshServerSchema.shape.hostKey
      .nullable()
      .default(null)
      .describe("the server's host key, pinned (SHA256:...); unset refuses every key"),
    directory: absPath.describe(
      'directory on the server: the repository goes in <directory>/repo, the catalog in <directory>/catalog',
    ),
  })
  .strict()
  .refine((t) => t.password !== null || t.privateKey !== null, 'needs a password or a privateKey');

export type SftpTargetConfig = z.output<typeof sftpTargetSchema>;

export const historySchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe('the daemon takes a history backup (and replicates it) after the daily backup'),
    dir: absPath
      .default('/data/zshield/history')
      .describe(
        "the local repository, catalog, targets' state and catalog signing key: on a volume other than lv-root, so a rollback erases none of them",
      ),
    password: ciphertext
      .nullable()
      .default(null)
      .describe('the repository password, encrypted with keyFile (history init writes it)'),
    keyFile: absPath
      .default('/etc/zshield/history.key')
      .describe("32 random bytes (base64, mode 0600) that encrypt this section's passwords"),
    publicKey: z
      .string()
      .regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, 'must be ed25519:<base64>')
      .nullable()
      .default(null)
      .describe(
        "the catalog's public key (ed25519:...), pinned: history init writes it, history status prints it",
      ),
    source: z
      .enum(['temporary', 'snap0'])
      .default('temporary')
      .describe('temporary: a snapshot made for the take (the tree of now); snap0: the latest restore point'),
    tempSnapshotSize: sizeSpec
      .default({ kind: 'percent', percent: 20 })
      .describe("copy-on-write store of the take's temporary snapshot: a share of lv-root or absolute"),
    mountPoint: absPath
      .default('/run/zshield/history-root')
      .describe(
        'where the snapshot is mounted (read-only, noload): the same path every time, so restic finds the parent backup and reads only changed files',
      ),
    cacheDir: absPath
      .default('/run/zshield/restic-cache')
      .describe("restic's cache, on a tmpfs (a read-only root is never written)"),
    keep: z
      .object({
        daily: z.number().int().min(0).max(1000).default(7).describe('restic forget --keep-daily'),
        weekly: z.number().int().min(0).max(1000).default(4).describe('restic forget --keep-weekly'),
        monthly: z.number().int().min(0).max(1000).default(6).describe('restic forget --keep-monthly'),
      })
      .strict()
      .prefault({}),
    targets: z
      .array(sftpTargetSchema)
      .default([])
      .describe('places the repository is replicated to, each a complete copy'),
    verifyPercent: z
      .number()
      .min(0)
      .max(100)
      .default(10)
      .describe(
        "share of each target's files checked by hash on every replication (all of them over 100/N runs)",
      ),
    maxLagHours: z
      .number()
      .positive()
      .max(24 * 366)
      .default(48)
      .describe(
        'history status fails when a target lacks a cataloged backup older than this many hours (it is that far behind)',
      ),
    ...transferSettings('a target'),
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

/**
 * The named targets of `history.targets`, in the order asked. A name that is not configured is the
 * one error every command gives for it (`history restore --from`, `history replicate --target`, ...):
 * NotFoundError, exit 5.
 */
export function historyTargetsNamed(h: HistoryConfig, names: readonly string[]): SftpTargetConfig[] {
  const unknown = names.filter((n) => !h.targets.some((t) => t.name === n));
  if (unknown.length) {
    const known = h.targets.map((t) => t.name);
    throw new NotFoundError(`no history target named ${unknown.join(', ')}`, {
      hint: known.length
        ? `the targets in history.targets are: ${known.join(', ')}`
        : 'history.targets is empty',
    });
  }
  return names.map((n) => h.targets.find((t) => t.name === n)!);
}
