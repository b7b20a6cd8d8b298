import { readFileSync } from 'node:fs';
import type { Context } from '../context.js';
import { ConfigError } from '../errors.js';
import { missingSettings, type RemoteConfig } from '../config/remote.js';
import { checkPrivateFile, openPassword } from '../system/secrets.js';
import { type Credentials, type Endpoint, parsePrivateKey } from './connect.js';

export interface Target {
  endpoint: Endpoint;
  user: string;
  destination: string;
  remote: RemoteConfig;
}

/** Where to copy to, or a config error naming every setting that is missing. */
export function remoteTarget(ctx: Context): Target {
  const remote = ctx.config.remote;
  const missing = missingSettings(remote);
  if (missing.length) {
    throw new ConfigError(
      missing.map((m) => ({
        where: `${ctx.configFile ?? 'config'}: ${m}`,
        message: 'must be set for a remote copy',
      })),
      { hint: 'set them with zshield config edit' },
    );
  }
  return {
    endpoint: { host: remote.server!, port: remote.port },
    user: remote.user!,
    destination: remote.destination!.replace(/\/+$/, '') || '/',
    remote,
  };
}

/**
 * The credentials, read now and held in memory only: the password decrypted (and registered with
 * the logger's redaction), the private key read (parsed when a connection is made, or by
 * checkCredentials). Every file holding a secret is checked first: owner-only, or refused. The
 * config file holds the encrypted password, so it is one of them.
 */
export function loadCredentials(ctx: Context, target: Target): Credentials {
  const r = target.remote;
  let password: string | null = null;
  let privateKey: Buffer | null = null;
  if (r.privateKey) {
    checkPrivateFile(r.privateKey, 'private key');
    privateKey = readFileSync(r.privateKey);
  }
  if (r.password) {
    if (ctx.configFile) checkPrivateFile(ctx.configFile, 'config file');
    password = openPassword({ ciphertext: r.password, keyFile: r.keyFile, log: ctx.log });
  }
  return { user: target.user, password, privateKey };
}

/**
 * loadCredentials, and the private key parsed: what a command checks before its first step (and
 * `config check` reports), so a key ssh2 cannot use is refused by its file name before anything.
 */
export async function checkCredentials(ctx: Context, target: Target): Promise<Credentials> {
  const c = loadCredentials(ctx, target);
  if (c.privateKey && target.remote.privateKey) await parsePrivateKey(c.privateKey, target.remote.privateKey);
  return c;
}
