import { existsSync } from 'node:fs';
import type { Context } from '../context.js';
import { ConfigError, type ZshieldError, errorCollector } from '../errors.js';
import { checkCredentials } from '../ssh/credentials.js';
import { openPassword } from '../system/secrets.js';
import { loadSigningKey } from '../system/signing.js';
import { FW_CFG_RECOVERY_FILE, readRecoveryFile } from './recovery-file.js';
import { signingKeyFile } from './repo.js';
import { remoteTargetOf } from './sftp-store.js';

/**
 * What `zshield config check` asks of the history section: the checks its commands make before
 * they connect or sign. Each target: a pinned host key (without one every key is refused), its
 * secrets owner-only and readable (private key, the password opened with history.keyFile); the
 * catalog's signing key, once made, owner-only and a key; the recovery file where `recover
 * offbox` reads it by default (the golden medium's fw_cfg entry), when there is one: owner-only
 * and valid.
 */
export async function checkHistoryConfig(
  ctx: Context,
  recoveryFiles: readonly string[] = [FW_CFG_RECOVERY_FILE],
): Promise<ZshieldError[]> {
  const h = ctx.config.history;
  const { errors, collect } = errorCollector();
  for (const [i, t] of h.targets.entries()) {
    if (t.type === 's3') {
      // The secret opens with the key file (and is registered with the log's redaction).
      await collect(() => openPassword({ ciphertext: t.secretAccessKey, keyFile: h.keyFile, log: ctx.log }));
      continue;
    }
    if (!t.hostKey) {
      errors.push(
        new ConfigError(
          [
            {
              where: `history.targets[${i}].hostKey`,
              message: `target ${t.name}: not set, so every host key is refused`,
            },
          ],
          { hint: "pin the server's host key (SHA256:..., as ssh-keyscan | ssh-keygen -lf - prints it)" },
        ),
      );
    }
    await collect(() => checkCredentials(ctx, remoteTargetOf(h, t)));
  }
  if (existsSync(signingKeyFile(h))) await collect(() => loadSigningKey(signingKeyFile(h)));
  for (const file of recoveryFiles) if (existsSync(file)) await collect(() => readRecoveryFile(file));
  return errors;
}
