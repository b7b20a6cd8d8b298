import { renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { ConfigError, NotFoundError, UsageError } from '../errors.js';
import { writeRemoteSection } from './config-file.js';
import { askNewPassword, askYesNo, type Prompter } from '../system/prompt.js';
import {
  checkPrivateFile,
  encryptPassword,
  fsyncDir,
  keyId,
  newKey,
  openPassword,
  pendingKeyFile,
  writeKeyFile,
} from './secrets.js';

export interface KeygenOptions {
  configFile: string;
  /** For --ask-password and the confirmation; null when not on a terminal. */
  prompter: Prompter | null;
  /** Enter the password instead of decrypting the stored one (the old key is lost or wrong). */
  askPassword: boolean;
  yes: boolean;
}

/**
 * `zshield keygen`: the seed's newKeyGen. A new key replaces the key file, and the password is
 * re-encrypted with it. The seed overwrote the key first, so a failure in between lost the
 * password; here the order makes every moment recoverable:
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

export async function runKeygen(ctx: Context, opts: KeygenOptions): Promise<KeygenResult> {
  const r = ctx.config.remote;
  const keyFile = r.keyFile;
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
  if (plain !== null) {
    ctx.log.redact(plain);
    if (ctx.configFile) checkPrivateFile(ctx.configFile, 'config file');
  }
  const what = `replace the key file ${keyFile}${plain !== null ? ' and re-encrypt the password with the new key' : ' (no password is stored)'}`;
  if (ctx.dryRun) {
    ctx.out.print(`dry run: would ${what}`);
    return { keyFile, keyId: null, password: plain !== null };
  }
  if (!opts.yes) {
    if (!opts.prompter) throw new UsageError('not on a terminal: confirm with --yes');
    if (!(await askYesNo(opts.prompter, `This will ${what}. Go on? (y/n) `))) {
      ctx.out.print('No changes.');
      return { keyFile, keyId: null, password: plain !== null };
    }
  }

  const key = newKey();
  const pending = pendingKeyFile(keyFile);
  writeKeyFile(ctx.writes, pending, key);
  try {
    if (plain !== null)
      writeRemoteSection(ctx.writes, opts.configFile, { ...r, password: encryptPassword(plain, key) });
  } catch (err) {
    // The config still matches the old key: drop the new one so nothing half-done remains.
    rmSync(pending, { force: true });
    throw err;
  }
  renameSync(pending, keyFile);
  fsyncDir(path.dirname(keyFile));
  ctx.log.info(`keygen: new key file ${keyFile} (key id ${keyId(key)})`);
  ctx.out.print(
    `new key file ${keyFile} (key id ${keyId(key)})${plain !== null ? `; the password in ${opts.configFile} is re-encrypted with it` : ''}`,
  );
  return { keyFile, keyId: keyId(key), password: plain !== null };
}
