import { readFileSync } from 'node:fs';
import { parseConfigText } from '../config/load.js';
import { ConfigError } from '../errors.js';
import { type RemoteConfig, remoteSchema } from '../config/remote.js';
import type { Writes } from '../system/writes.js';
import { writePrivateFileAtomic } from '../system/atomic-file.js';

/**
 * Rewrite the `remote` section of the config file and nothing else: the other sections are kept as
 * written (only reformatted as JSON). The whole result is validated before it is written, then
 * written atomically with mode 0600 (it holds the encrypted password). A file that does not exist
 * yet is created.
 */
export function writeRemoteSection(writes: Writes, configFile: string, remote: RemoteConfig): void {
  let raw: Record<string, unknown> = {};
  let text: string | null = null;
  try {
    text = readFileSync(configFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError([
        { where: configFile, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}` },
      ]);
    }
  }
  if (text !== null) {
    // Validates the file as it is; a broken file is reported, never overwritten.
    parseConfigText(text, configFile);
    raw = JSON.parse(text) as Record<string, unknown>;
  }
  const section = remoteSchema.parse(remote);
  const next = { ...raw, remote: section };
  const out = `${JSON.stringify(next, null, 2)}\n`;
  parseConfigText(out, configFile);
  writePrivateFileAtomic(writes, configFile, out);
}
