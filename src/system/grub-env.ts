import { writeFileAtomic } from './atomic-file.js';
import type { Writes } from './writes.js';

/**
 * GRUB's environment block, the format its `load_env` reads (grub-core/lib/envblk.c): the
 * signature line, `name=value` lines, then `#` up to the block's size. grub-editenv writes 1024
 * bytes; GRUB's own `save_env` only rewrites a block in place, so the size never changes.
 * We write the file ourselves because `grub-editenv FILE set` truncates and rewrites the file in
 * place: a power cut in between leaves an empty or half-written block, which load_env rejects.
 */
export const ENV_BLOCK_SIZE = 1024;
const SIGNATURE = '# GRUB Environment Block\n';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A complete 1024-byte block holding `vars` (in their order). Throws when they do not fit. */
export function formatEnvBlock(vars: Record<string, string>): Buffer {
  let text = SIGNATURE;
  for (const [name, value] of Object.entries(vars)) {
    if (!NAME.test(name)) throw new Error(`not a GRUB variable name: ${JSON.stringify(name)}`);
    // GRUB escapes a backslash and a newline with a backslash; no value of ours needs either, and
    // a line break in a value is more likely a bug than data: refuse it.
    if (/[\\\n\r\0]/.test(value))
      throw new Error(`GRUB variable ${name}: value has a control character or backslash`);
    text += `${name}=${value}\n`;
  }
  const body = Buffer.from(text, 'utf8');
  if (body.length > ENV_BLOCK_SIZE) {
    throw new Error(`GRUB environment block: ${body.length} bytes do not fit in ${ENV_BLOCK_SIZE}`);
  }
  return Buffer.concat([body, Buffer.alloc(ENV_BLOCK_SIZE - body.length, '#')]);
}

/** The variables of a block, or null when it is not one (no signature). */
export function parseEnvBlock(data: Buffer): Record<string, string> | null {
  const text = data.toString('utf8');
  if (!text.startsWith(SIGNATURE)) return null;
  const vars: Record<string, string> = {};
  for (const line of text.slice(SIGNATURE.length).split('\n')) {
    // Padding, and comment lines, start with '#'.
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    vars[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return vars;
}

/**
 * Replace `file` with a block holding `vars`, power-cut safe: the whole block goes to a temporary
 * file beside it, is flushed, and is renamed over the old one (a rename within one file system is
 * atomic: GRUB finds the old block or the new one, never a part). The folder is flushed too, so
 * the rename itself survives a power cut.
 */
export function writeEnvFileAtomic(writes: Writes, file: string, vars: Record<string, string>): void {
  writeFileAtomic(writes, file, formatEnvBlock(vars), { mode: 0o644, dirMode: 0o755 });
}
