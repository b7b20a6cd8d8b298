import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { type HistoryBox, makeHistoryBox, passwordOf, takeFingerprint, zh } from './history-lib.js';
import { expectError, sha256 } from './lib.js';

const env = inject('remote');

/** name -> sha256 of the regular files at the top of a directory. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isFile()) out[e.name] = sha256(path.join(dir, e.name));
  return out;
}

function mounted<T>(box: HistoryBox, fn: (dir: string) => T): T {
  const mnt = path.join(box.dir, 'look');
  mkdirSync(mnt, { recursive: true });
  spawnSync('mount', ['-o', 'ro,noload,loop', box.tree, mnt]);
  try {
    return fn(mnt);
  } finally {
    spawnSync('umount', [mnt]);
  }
}

describe('history restore: a fingerprint back from the local repository or from a target', () => {
  let box: HistoryBox;
  let id: string;
  let original: Record<string, string>;

  beforeAll(() => {
    box = makeHistoryBox(env, { files: 30, size: 40_000 });
    id = takeFingerprint(zh(box, ['history', 'take', '--device', box.tree]));
    const r = zh(box, ['history', 'replicate']);
    expect(r.code, r.stderr).toBe(0);
    original = mounted(box, tree);
    expect(Object.keys(original).length).toBe(30);
  });

  it('from the local repository, with progress in the log', () => {
    const out = path.join(box.dir, 'restored-local');
    const r = zh(box, ['history', 'restore', id, out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/restored into .* from local \(\d+ files/);
    expect(tree(out)).toEqual(original);
    expect(readFileSync(box.logFile, 'utf8')).toMatch(/history restore: 100% \(\d+ files/);
  });

  it('without a local repository: fetched from a target (each file checked), --from picks the SFTP-only one', () => {
    const repo = path.join(box.dir, 'history', 'repo');
    renameSync(repo, `${repo}.away`);
    try {
      const outA = path.join(box.dir, 'restored-a');
      const a = zh(box, ['history', 'restore', id, outA]);
      expect(a.code, a.stderr).toBe(0);
      expect(a.stdout).toMatch(/from a \(\d+ files/);
      expect(tree(outA)).toEqual(original);
      const outB = path.join(box.dir, 'restored-b');
      const b = zh(box, ['history', 'restore', id, outB, '--from', 'b']);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout).toMatch(/from b \(\d+ files/);
      expect(tree(outB)).toEqual(original);
      // The temporary copy is gone.
      expect(readdirSync(path.join(box.dir, 'history', 'work'))).toEqual([]);

      // A damaged file on b: the fetch stops on it, naming it.
      const data = path.join(box.destB, 'repo', 'data');
      const sub = readdirSync(data).find((d) => readdirSync(path.join(data, d)).length)!;
      const file = path.join(data, sub, readdirSync(path.join(data, sub))[0]!);
      const buf = readFileSync(file);
      buf[0]! ^= 1;
      writeFileSync(file, buf);
      const bad = zh(box, ['history', 'restore', id, path.join(box.dir, 'restored-bad'), '--from', 'b']);
      expectError(bad, ExitCode.verifyFailed, /b \(.*\): data\/[0-9a-f]{2}\/[0-9a-f]{64} is damaged/);
    } finally {
      renameSync(`${repo}.away`, repo);
    }
  });

  it('refuses a fingerprint the catalog does not list (exit 6), unless told knowingly', () => {
    // A backup made behind zshield's back: in the repository, not in the catalog.
    const pw = path.join(box.dir, 'pw');
    writeFileSync(pw, passwordOf(box), { mode: 0o600 });
    const src = path.join(box.dir, 'stray');
    mkdirSync(src, { recursive: true });
    writeFileSync(path.join(src, 'x'), 'stray');
    const b = spawnSync(
      'restic',
      [
        '-r',
        path.join(box.dir, 'history', 'repo'),
        '--password-file',
        pw,
        '--no-cache',
        '--json',
        'backup',
        '.',
      ],
      {
        cwd: src,
        encoding: 'utf8',
      },
    );
    expect(b.status, b.stderr).toBe(0);
    const s = spawnSync(
      'restic',
      [
        '-r',
        path.join(box.dir, 'history', 'repo'),
        '--password-file',
        pw,
        '--no-cache',
        'snapshots',
        '--json',
      ],
      {
        encoding: 'utf8',
      },
    );
    const stray = (JSON.parse(s.stdout) as { id: string }[]).map((x) => x.id).find((x) => x !== id)!;
    const r = zh(box, ['history', 'restore', stray, path.join(box.dir, 'restored-stray')]);
    expectError(r, ExitCode.refused, new RegExp(`fingerprint ${stray} is not in the catalog`));
    expect(r.stderr).toMatch(/--allow-uncataloged/);
    // The reset refuses it the same way, before it looks at LVM.
    const reset = zh(box, ['recover', 'fingerprint', stray, '--yes']);
    expectError(reset, ExitCode.refused, new RegExp(`fingerprint ${stray} is not in the catalog`));
    const ok = zh(box, [
      'history',
      'restore',
      stray,
      path.join(box.dir, 'restored-stray'),
      '--allow-uncataloged',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(path.join(box.dir, 'restored-stray', 'x'), 'utf8')).toBe('stray');
    expectError(zh(box, ['history', 'restore', 'abc', '/tmp/x']), ExitCode.usage, /not a fingerprint/);
  });
});
