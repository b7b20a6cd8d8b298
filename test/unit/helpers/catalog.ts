import { fileRecord } from '../../../src/history/catalog-files.js';
import type { NewEntry } from '../../../src/history/catalog.js';

/**
 * A backup entry of a box's catalog, with its signed record of the repository's files: `files`
 * what the repository holds after it, `before` what it held before (the record keeps the change).
 */
export const backupEntry = (
  fingerprint: string,
  time: string,
  files: string[],
  before: Set<string>,
): NewEntry => ({
  kind: 'backup',
  fingerprint,
  time,
  host: 'box',
  reason: 'daily',
  version: 'test',
  sizes: { bytes: 1, files: 1, added: 1 },
  files: fileRecord(before, files),
});
