import type { Argv } from 'yargs';
import type { Context } from '../context.js';
import { ConfigError, UsageError } from '../errors.js';
import { withJson, withYes } from '../output.js';
import type { TargetRequest } from './write-target.js';

// Options the golden image commands and clone send/receive share, declared once (clone/cli.ts
// takes them through golden/index.ts).

export function whole(name: string, v: unknown, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number >= ${min}`);
  return n;
}

export function targetOf(a: {
  target: string | undefined;
  'target-file': string | undefined;
}): TargetRequest {
  return {
    ...(a.target ? { serial: a.target } : {}),
    ...(a['target-file'] ? { file: a['target-file'] } : {}),
  };
}

export const targetOptions = <T>(y: Argv<T>) =>
  withJson(
    withYes(
      y
        .option('target', {
          type: 'string',
          describe: 'serial or WWN of the disk to write (else disks.golden.serial)',
        })
        .option('target-file', {
          type: 'string',
          describe: 'a file or block device to write instead (tests, loop devices)',
        }),
      'confirm: the target is erased',
    ),
  );

// Options several subcommands share, declared once.
export const keyOption = {
  type: 'string',
  describe: 'vendor signing key file (else clone.signingKey)',
} as const;

export function signingKeyFile(ctx: Context, a: { key: string | undefined }): string {
  const file = a.key ?? ctx.config.clone.signingKey;
  if (!file)
    throw new ConfigError([{ where: 'clone.signingKey', message: 'no signing key (or give --key FILE)' }]);
  return file;
}
