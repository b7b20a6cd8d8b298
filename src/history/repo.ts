import path from 'node:path';
import type { HistoryConfig } from '../config/history.js';
import type { Context } from '../context.js';
import { ConfigError } from '../errors.js';
import { checkPrivateFile, openPassword } from '../system/secrets.js';
import { loadSigningKey, type SigningKey } from '../system/signing.js';
import { Restic } from './restic.js';

/** Where the history's files live under history.dir (a volume other than lv-root). */
export const repoDir = (h: HistoryConfig) => path.join(h.dir, 'repo');
export const signingKeyFile = (h: HistoryConfig) => path.join(h.dir, 'catalog.key');

/** The repository password, decrypted now (and registered for redaction), or a config error. */
export function repositoryPassword(ctx: Context): string {
  const h = ctx.config.history;
  if (!h.password) {
    throw new ConfigError(
      [{ where: `${ctx.configFile ?? 'config'}: history.password`, message: 'is not set' }],
      {
        hint: 'zshield history init makes the repository and stores its password',
      },
    );
  }
  if (ctx.configFile) checkPrivateFile(ctx.configFile, 'config file');
  return openPassword({ ciphertext: h.password, keyFile: h.keyFile, log: ctx.log });
}

/** restic on a repository (the local one by default), with the history's password and cache. */
export function resticFor(
  ctx: Context,
  repo = repoDir(ctx.config.history),
  password = repositoryPassword(ctx),
): Restic {
  return new Restic(ctx, {
    repo,
    password,
    cacheDir: ctx.config.history.cacheDir,
    runDir: ctx.config.paths.runDir,
  });
}

export function catalogKey(ctx: Context): Promise<SigningKey> {
  return loadSigningKey(signingKeyFile(ctx.config.history));
}
