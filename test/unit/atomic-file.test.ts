// The one atomic writer, and the files it writes pinned byte for byte and by mode: a box upgraded
// mid-life must read its boot menu block and its records exactly as an older zshield wrote them.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DryRunError } from '../../src/errors.js';
import { writeFileAtomic, writeJsonAtomic, writePrivateFileAtomic } from '../../src/system/atomic-file.js';
import { writeEnvFileAtomic } from '../../src/system/grub-env.js';
import { REAL_WRITES, writesFor } from '../../src/system/writes.js';
import { tempDir } from './helpers/context.js';

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const modeOf = (file: string) => statSync(file).mode & 0o777;

describe('atomic file writer', () => {
  let cleanup = () => {};
  afterEach(() => cleanup());
  const dir = () => {
    const t = tempDir();
    cleanup = t.cleanup;
    return t.dir;
  };
  /** What the umask lets through for a file created with `mode` (the writers open with it). */
  const umasked = (d: string, mode: number) => {
    const probe = path.join(d, 'umask-probe');
    writeFileSync(probe, '', { mode: 0o777 });
    return mode & modeOf(probe);
  };

  it('writes the GRUB env block exactly as before: 1024 bytes, same hash, mode 0644', () => {
    const d = dir();
    const file = path.join(d, 'boot', 'zshield', 'bootmenu.env');
    writeEnvFileAtomic(REAL_WRITES, file, { zshield_restore_point: '2026-11-30 03:00, daily' });
    const text = readFileSync(file, 'latin1');
    const head = '# GRUB Environment Block\nzshield_restore_point=2026-11-30 03:00, daily\n';
    expect(text).toBe(head + '#'.repeat(1024 - head.length));
    // The hash of what the writer before this one (grub-env.ts's own) wrote for these values.
    expect(sha(file)).toBe('4c871f14eb70e667b81998e022d1b989973ff1c058c7463ae124158162e1aff4');
    expect(modeOf(file)).toBe(umasked(d, 0o644));
    expect(modeOf(path.dirname(file))).toBe(umasked(d, 0o755));
  });

  it('writes a state record exactly as before: two-space JSON, final newline, mode 0644 (0600 when asked)', () => {
    const d = dir();
    const file = path.join(d, 'state', 'last-backup.json');
    const rec = { result: 'ok', reason: 'daily', at: '2026-11-30T03:00:00.000Z', durationMs: 1200 };
    writeJsonAtomic(REAL_WRITES, file, rec);
    expect(readFileSync(file, 'utf8')).toBe(
      '{\n  "result": "ok",\n  "reason": "daily",\n  "at": "2026-11-30T03:00:00.000Z",\n  "durationMs": 1200\n}\n',
    );
    expect(modeOf(file)).toBe(umasked(d, 0o644));
    const copies = path.join(d, 'state', 'copies.json');
    writeJsonAtomic(REAL_WRITES, copies, [{ a: 1 }], 0o600);
    expect(readFileSync(copies, 'utf8')).toBe('[\n  {\n    "a": 1\n  }\n]\n');
    expect(modeOf(copies)).toBe(0o600);
  });

  it('writes private files 0600 in a folder made 0700, whatever the umask', () => {
    const d = dir();
    const file = path.join(d, 'priv', 'remote.ini');
    writePrivateFileAtomic(REAL_WRITES, file, 'x=1\n');
    expect(readFileSync(file, 'utf8')).toBe('x=1\n');
    expect(modeOf(file)).toBe(0o600);
    expect(modeOf(path.dirname(file))).toBe(umasked(d, 0o700));
  });

  it('replaces the old file whole and leaves no temporary file', () => {
    const d = dir();
    const file = path.join(d, 'f.txt');
    writeFileAtomic(REAL_WRITES, file, 'old\n', { mode: 0o644, dirMode: 0o755 });
    writeFileAtomic(REAL_WRITES, file, Buffer.from('new\n'), { mode: 0o644, dirMode: 0o755 });
    expect(readFileSync(file, 'utf8')).toBe('new\n');
    expect(readdirSync(d)).toEqual(['f.txt']);
  });

  it('writes nothing in a dry run, not even the folder', () => {
    const d = dir();
    const file = path.join(d, 'sub', 'f.txt');
    expect(() => writeFileAtomic(writesFor(true), file, 'x', { mode: 0o644, dirMode: 0o755 })).toThrow(
      DryRunError,
    );
    expect(readdirSync(d)).toEqual([]);
  });
});
