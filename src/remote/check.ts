import type { Context } from '../context.js';
import { ZshieldError } from '../errors.js';
import { checkCredentials, remoteTarget } from '../ssh/credentials.js';

/**
 * What `zshield config check` asks of the remote settings: the very checks `remote copy` (and the
 * daemon's copy) makes before it connects: every setting it needs, the files holding secrets
 * owner-only, the password a zshield ciphertext that opens with the key file, the private key
 * readable. Only when the remote is in use (enabled, or a server set): an unused section is no
 * problem. Like the copy, it finishes a keygen a power cut interrupted (secrets.ts).
 */
export async function checkRemoteConfig(ctx: Context): Promise<ZshieldError[]> {
  const r = ctx.config.remote;
  if (!r.enabled && !r.server) return [];
  try {
    await checkCredentials(ctx, remoteTarget(ctx));
    return [];
  } catch (err) {
    if (err instanceof ZshieldError) return [err];
    throw err;
  }
}
