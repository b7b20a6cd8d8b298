import { renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import type { Plan, Step } from '../plan/plan.js';
import { runPlan } from '../plan/run.js';
import { ConfigError, NotFoundError, UsageError } from '../errors.js';
import { writeRemoteSection } from './config-file.js';
import { fsyncDir } from '../system/atomic-file.js';
import { askNewPassword, askYesNo, type Prompter } from '../system/prompt.js';
import {
  checkPrivateFile,
  encryptPassword,
  keyId,
  newKey,
  openPassword,
  pendingKeyFile,
  writeKeyFile,
} from '../system/secrets.js';

export interface KeygenOptions {
  configFile: string;
  /** For --ask-password and the confirmation; null when not on a terminal. */
  prompter: Prompter | null;
  /** Enter the password instead of decrypting the stored one (the old key is lost or wrong). */
  askPassword: boolean;
  yes: boolean;
}

/**
 * `zshield keygen`: a new key replaces the key file, and the password is re-encrypted with it.
 * Overwriting the key first would lose the password to a failure in between; here the order makes every moment recoverable:
 *   1. the new key is written to `<keyFile>.new` (0600, fsync); the old key file is untouched;
 *   2. the config is rewritten (atomically) with the password encrypted by the new key;
 *   3. `<keyFile>.new` is renamed over the key file.
 * Stopped after 1: the config still matches the old key. Stopped after 2: the ciphertext's key id
 * names the `.new` file, and the next use of the password finishes step 3 (secrets.ts).
 */
/** What `keygen` did (its --json document; the key itself never). */
export interface KeygenResult {
  keyFile: string;
  /** The new key's id; null when nothing was written (a dry run, or not confirmed). */
  keyId: string | null;
  /** A stored password is (or, on a dry run, would be) re-encrypted with the new key. */
  password: boolean;
}

/** The stored password in the clear (to re-encrypt), a newly typed one, or null when none is stored. */
async function passwordToKeep(ctx: Context, opts: KeygenOptions, keyFile: string): Promise<string | null> {
  const r = ctx.config.remote;
  let plain: string | null = null;
  if (opts.askPassword) {
    if (!opts.prompter) throw new UsageError('--ask-password needs a terminal to type the password on');
    plain = await askNewPassword(opts.prompter);
    if (plain === '') throw new UsageError('no password entered; nothing changed');
  } else if (r.password) {
    try {
      plain = openPassword({ ciphertext: r.password, keyFile, log: ctx.log });
    } catch (err) {
      const hint = 'if the old key is lost or wrong, enter the password again: zshield keygen --ask-password';
      if (err instanceof ConfigError) throw new ConfigError(err.problems, { hint });
      if (err instanceof NotFoundError) throw new NotFoundError(err.message, { hint });
      throw err;
    }
  }
  return plain;
}

/** The steps: the new key beside the old, the password re-encrypted with it, then the swap. */
function keygenPlan(
  ctx: Context,
  opts: KeygenOptions,
  plain: string | null,
  made: { key: Buffer | null },
): Plan {
  const r = ctx.config.remote;
  const keyFile = r.keyFile;
  const pending = pendingKeyFile(keyFile);
  const steps: Step[] = [
    {
      title: `write a new key to ${pending} (0600)`,
      edit: {
        files: [pending],
        apply: () => {
          made.key = newKey();
          writeKeyFile(ctx.writes, pending, made.key);
        },
      },
    },
  ];
  if (plain !== null) {
    const password = plain;
    steps.push({
      title: `re-encrypt the password with the new key in ${opts.configFile}`,
      edit: {
        files: [opts.configFile],
        apply: () => {
          try {
            writeRemoteSection(ctx.writes, opts.configFile, {
              ...r,
              password: encryptPassword(password, made.key!),
            });
          } catch (err) {
            // The config still matches the old key: drop the new one so nothing half-done remains.
            rmSync(pending, { force: true });
            throw err;
          }
        },
      },
    });
  }
  steps.push({
    title: `put the new key in place of ${keyFile}`,
    edit: {
      files: [keyFile],
      apply: () => {
        renameSync(pending, keyFile);
        fsyncDir(path.dirname(keyFile));
      },
    },
  });
  return {
    title: `Replace the key file ${keyFile} of the remote password`,
    notes: [
      plain !== null
        ? 'the password is re-encrypted with the new key before the key file is replaced: a stop at any moment leaves a key that opens it'
        : 'no password is stored: only the key file is replaced',
    ],
    steps,
  };
}

export async function runKeygen(ctx: Context, opts: KeygenOptions): Promise<KeygenResult> {
  const keyFile = ctx.config.remote.keyFile;
  const plain = await passwordToKeep(ctx, opts, keyFile);
  if (plain !== null) {
    ctx.log.redact(plain);
    if (ctx.configFile) checkPrivateFile(ctx.configFile, 'config file');
  }
  const what = `replace the key file ${keyFile}${plain !== null ? ' and re-encrypt the password with the new key' : ' (no password is stored)'}`;
  // Asked before the plan runs (a dry run asks nothing): the answer decides whether it runs.
  if (!ctx.dryRun && !opts.yes) {
    if (!opts.prompter) throw new UsageError('not on a terminal: confirm with --yes');
    if (!(await askYesNo(opts.prompter, `This will ${what}. Go on? (y/n) `))) {
      ctx.out.print('No changes.');
      return { keyFile, keyId: null, password: plain !== null };
    }
  }

  // Made when the first step runs (a dry run makes no key).
  const made: { key: Buffer | null } = { key: null };
  const plan = keygenPlan(ctx, opts, plain, made);
  // A real run's plan goes to the log: its stdout says what was done, as before.
  const run = await runPlan(ctx, plan, { confirm: 'none', ...(ctx.dryRun ? {} : { show: 'log' as const }) });
  const key = made.key;
  if (!run.applied || !key) return { keyFile, keyId: null, password: plain !== null };
  ctx.log.info(`keygen: new key file ${keyFile} (key id ${keyId(key)})`);
  ctx.out.print(
    `new key file ${keyFile} (key id ${keyId(key)})${plain !== null ? `; the password in ${opts.configFile} is re-encrypted with it` : ''}`,
  );
  return { keyFile, keyId: keyId(key), password: plain !== null };
}
