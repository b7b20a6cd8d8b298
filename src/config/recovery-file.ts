import * as z from 'zod';
import { httpAllowed, s3Fields } from './history.js';
import { sshServerSchema } from './remote.js';

/**
 * The recovery file: what a blank replacement disk needs to be brought back from the off-box copy
 * (`zshield recover offbox`, the golden medium's "Recover from off-box backup"), since nothing on
 * the box holds it any more. It carries secrets in clear (the repository password, the target's
 * login key or password): it lives on a removable medium the operator keeps locked away, and
 * zshield copies them into 0600 files under the run directory at once. JSON:
 *
 *   { "target": { "server": "backup.example", "port": 22, "user": "zs", "directory": "/srv/zs/box1",
 *                 "hostKey": "SHA256:...", "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\n..." },
 *     "repositoryPassword": "...", "publicKey": "ed25519:...", "fingerprint": "<64 hex, optional>" }
 *
 * or an S3 target: `{ "type": "s3", "endpoint": "https://s3.example", "bucket": "fleet",
 * "prefix": "box1/", "accessKeyId": "...", "secretAccessKey": "..." }` (the secret in clear).
 */

const absPath = z
  .string()
  .startsWith('/', 'must be an absolute path')
  .refine((s) => !s.includes('\n') && !s.includes('\0'), 'must not contain a newline');

function sftpRecoveryTarget() {
  return sshServerSchema
    .extend({
      type: z.literal('sftp'),
      directory: absPath.describe('the target directory of history.targets (repo/ and catalog/ inside)'),
      privateKey: z
        .string()
        .regex(/^-----BEGIN [A-Z ]*PRIVATE KEY-----\n[\s\S]+-----END [A-Z ]*PRIVATE KEY-----\s*$/, {
          message: 'must be an unencrypted private key in PEM/OpenSSH text form',
        })
        .nullable()
        .default(null)
        .describe("the target's login key, in clear (the text of the key file)"),
      password: z.string().min(1).max(1024).nullable().default(null).describe('the login password, in clear'),
    })
    .strict()
    .refine((t) => t.privateKey !== null || t.password !== null, 'needs a privateKey or a password');
}

function s3RecoveryTarget() {
  return z
    .object({
      ...s3Fields(),
      accessKeyId: z.string().min(1).max(128).describe('the access key id'),
      secretAccessKey: z.string().min(1).max(1024).describe('its secret, in clear'),
    })
    .strict()
    .refine(httpAllowed, { message: 'an http:// endpoint needs allowHttp: true', path: ['allowHttp'] });
}

export const recoveryFileSchema = z
  .object({
    version: z.literal(1).default(1).describe('format version'),
    target: z.preprocess(
      // A target without a type is an SFTP one (files written before S3 targets existed).
      (v) => (v !== null && typeof v === 'object' && !('type' in v) ? { ...v, type: 'sftp' } : v),
      z.discriminatedUnion('type', [sftpRecoveryTarget(), s3RecoveryTarget()]),
    ),
    repositoryPassword: z
      .string()
      .min(1)
      .max(1024)
      .describe('the repository password (`zshield history password` prints it on the box)'),
    publicKey: z
      .string()
      .regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, 'must be ed25519:<base64>')
      .describe("the catalog's public key (`zshield history status` prints it)"),
    fingerprint: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be 64 hex digits')
      .nullable()
      .default(null)
      .describe('the backup to restore; default: the newest in the catalog that the target holds'),
  })
  .strict();

export type RecoveryFile = z.output<typeof recoveryFileSchema>;

/** The first problem of a recovery file, as one line: `target.hostKey: must be ...`. */
export function parseRecoveryFile(
  text: string,
): { ok: true; file: RecoveryFile } | { ok: false; problem: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: `not JSON (${(err as Error).message.split('\n')[0]})` };
  }
  const r = recoveryFileSchema.safeParse(raw);
  if (r.success) return { ok: true, file: r.data };
  const issue = r.error.issues[0]!;
  return { ok: false, problem: `${issue.path.join('.') || '(top level)'}: ${issue.message}` };
}
