import type { Context } from '../context.js';
import { type ZshieldError, errorCollector } from '../errors.js';
import { loadSigningKey, parsePublicKey } from '../system/signing.js';
import { loadPowerSecrets } from './power.js';

/**
 * What `zshield config check` asks of the clone section: the vendor signing key, when set, is
 * there, owner-only and an Ed25519 key (as `golden image make` and `clone send` load it); every
 * trusted key parses; every machine's BMC password is there (its 0600 file, or its variable in this
 * environment), as clone send --netboot reads it before it powers anything.
 */
export async function checkCloneConfig(ctx: Context): Promise<ZshieldError[]> {
  const c = ctx.config.clone;
  const { errors, collect } = errorCollector();
  if (c.signingKey) {
    const file = c.signingKey;
    await collect(() => loadSigningKey(file));
  }
  for (const [i, k] of c.trustedKeys.entries())
    await collect(() => parsePublicKey(k, `clone.trustedKeys[${i}]`));
  if (c.machines.length > 0) await collect(() => loadPowerSecrets(c.machines));
  return errors;
}
