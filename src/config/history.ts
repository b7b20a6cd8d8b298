import * as z from 'zod';
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
 * One place the repository is replicated to: an SFTP server (`type: sftp`, the default) or an
 * S3-compatible object store (`type: s3`), each behind the Store interface in history/repo-store.ts.
 */
export const sftpTargetSchema = sshServerSchema
  .extend({
    name: targetName.describe('a short name for messages, status and the catalog'),
    type: z.literal('sftp').default('sftp').describe('sftp (the default) or s3'),
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

/**
 * An S3-compatible object store (Ceph RADOS Gateway, MinIO, AWS): the repository under
 * `<prefix>repo/`, the catalog under `<prefix>catalog/` in one bucket.
 */
export const s3TargetSchema = z
  .object({
    name: targetName.describe('a short name for messages, status and the catalog'),
    ...s3Fields(),
    accessKeyId: z
      .string()
      .regex(/^[A-Za-z0-9+/=_-]{3,128}$/, 'must be an access key id')
      .describe("the access key id of the box's user"),
    secretAccessKey: ciphertext.describe('its secret access key, encrypted with history.keyFile'),
    appendOnly: z
      .boolean()
      .default(false)
      .describe(
        "the store denies this key every delete (a bucket policy, README): replication never deletes there, the vendor's prune credential does",
      ),
    multipartAboveMiB: z
      .number()
      .int()
      .min(5)
      .max(5120)
      .default(64)
      .describe('files larger than this go up in parts of 8 MiB (a cut upload resumes by part)'),
  })
  .strict()
  .refine(httpAllowed, { message: 'an http:// endpoint needs allowHttp: true', path: ['allowHttp'] });

/** An http:// endpoint only when allowed by name: the keys sign, but the data travels in clear. */
export function httpAllowed(t: { allowHttp: boolean; endpoint: string }): boolean {
  return t.allowHttp || t.endpoint.startsWith('https://');
}

/** Where an S3 store is (shared with the recovery file, whose secret is in clear). */
export function s3Fields() {
  return {
    type: z.literal('s3').describe('s3'),
    endpoint: z
      .url({ protocol: /^https?$/, error: 'must be an http(s):// URL' })
      .refine((u) => !/[?#]/.test(u) && !/@/.test(u), 'must be a plain URL (no user, query or fragment)')
      .describe("the store's URL (https://s3.example.com); path-style requests"),
    allowHttp: z
      .boolean()
      .default(false)
      .describe('allow an http:// endpoint (no TLS: the keys sign, but the data travels in clear)'),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a bucket name (3-63 of a-z 0-9 . -)')
      .describe("the bucket (made beforehand by the store's owner)"),
    prefix: z
      .string()
      .regex(/^([A-Za-z0-9_.-]+\/)*$/, 'must be empty or folders ending in / (box1/)')
      .default('')
      .describe('key prefix of this box in the bucket (box1/): several boxes can share a bucket'),
    region: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/)
      .default('us-east-1')
      .describe('the region the requests are signed for (any for Ceph)'),
  };
}

export type S3TargetConfig = z.output<typeof s3TargetSchema>;
export type TargetConfig = SftpTargetConfig | S3TargetConfig;

/** A target without a type is an SFTP one (configs written before S3 targets existed). */
export const targetSchema = z.preprocess(
  (v) => (v !== null && typeof v === 'object' && !('type' in v) ? { ...v, type: 'sftp' } : v),
  z.discriminatedUnion('type', [sftpTargetSchema, s3TargetSchema]),
);

/** Where a target is, for plans and messages: `user@host:/dir` or `s3 https://host/bucket/prefix`. */
export function targetWhere(t: TargetConfig): string {
  return t.type === 's3'
    ? `s3 ${t.endpoint.replace(/\/+$/, '')}/${t.bucket}/${t.prefix}`
    : `${t.user}@${t.server}:${t.directory}`;
}

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
      .array(targetSchema)
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
export function historyTargetsNamed(h: HistoryConfig, names: readonly string[]): TargetConfig[] {
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
