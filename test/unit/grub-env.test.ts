// The GRUB environment block zshield writes for the boot menu, checked against GRUB's own reader
// of the format on the host (grub-editenv, from grub-common): what it lists is what load_env loads.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ENV_BLOCK_SIZE,
  formatEnvBlock,
  parseEnvBlock,
  writeEnvFileAtomic,
} from '../../src/system/grub-env.js';
import { tempDir } from './helpers/context.js';
import { REAL_WRITES } from '../../src/system/writes.js';

const editenvList = (file: string) => execFileSync('grub-editenv', [file, 'list'], { encoding: 'utf8' });

describe('GRUB environment block', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());
  const dir = () => {
    const t = tempDir();
    cleanup = t.cleanup;
    return t.dir;
  };

  it('is exactly 1024 bytes: the signature, name=value lines, # padding; grub-editenv lists the values', () => {
    const block = formatEnvBlock({ zshield_restore_point: '2026-11-29 03:00, daily', other: '(x) y' });
    expect(block.length).toBe(ENV_BLOCK_SIZE);
    const text = block.toString('utf8');
    expect(
      text.startsWith(
        '# GRUB Environment Block\nzshield_restore_point=2026-11-29 03:00, daily\nother=(x) y\n#',
      ),
    ).toBe(true);
    expect(text).toMatch(/\n#+$/);
    const file = path.join(dir(), 'menu.env');
    writeFileSync(file, block);
    expect(editenvList(file)).toBe('zshield_restore_point=2026-11-29 03:00, daily\nother=(x) y\n');
  });

  it('reads what grub-editenv writes, and rejects what is not a block', () => {
    const file = path.join(dir(), 'grubenv');
    execFileSync('grub-editenv', [file, 'create']);
    execFileSync('grub-editenv', [file, 'set', 'next_entry=zshield-latest', 'zshield_menu_uuid=1234-abcd']);
    expect(statSync(file).size).toBe(ENV_BLOCK_SIZE);
    expect(parseEnvBlock(readFileSync(file))).toEqual({
      next_entry: 'zshield-latest',
      zshield_menu_uuid: '1234-abcd',
    });
    expect(parseEnvBlock(Buffer.from('zshield_restore_point=x\n'))).toBeNull();
    expect(parseEnvBlock(Buffer.alloc(0))).toBeNull();
  });

  it('refuses what GRUB would read differently or cannot hold: bad names, line breaks, backslashes, more than 1024 bytes', () => {
    expect(() => formatEnvBlock({ 'bad name': 'x' })).toThrow(/not a GRUB variable name/);
    expect(() => formatEnvBlock({ a: 'one\nb=two' })).toThrow(/control character/);
    expect(() => formatEnvBlock({ a: 'c:\\x' })).toThrow(/backslash/);
    expect(() => formatEnvBlock({ a: 'x'.repeat(1000) })).toThrow(/do not fit in 1024/);
    expect(formatEnvBlock({ a: 'x'.repeat(1024 - 25 - 3) }).length).toBe(1024); // fits exactly
  });

  it('replaces the file whole through a temporary file (no temporary left; the old block until the rename)', () => {
    const d = dir();
    const file = path.join(d, 'zshield', 'bootmenu.env');
    writeEnvFileAtomic(REAL_WRITES, file, { zshield_restore_point: 'none available' });
    expect(editenvList(file)).toBe('zshield_restore_point=none available\n');
    writeEnvFileAtomic(REAL_WRITES, file, { zshield_restore_point: '2026-11-30 03:00, daily' });
    expect(editenvList(file)).toBe('zshield_restore_point=2026-11-30 03:00, daily\n');
    expect(readdirSync(path.dirname(file))).toEqual(['bootmenu.env']);
    // A value that cannot be written leaves the old file as it was.
    expect(() => writeEnvFileAtomic(REAL_WRITES, file, { zshield_restore_point: 'a\nb' })).toThrow();
    expect(editenvList(file)).toBe('zshield_restore_point=2026-11-30 03:00, daily\n');
    expect(readdirSync(path.dirname(file))).toEqual(['bootmenu.env']);
  });
});
