import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { MANIFEST_FORMAT, type Manifest } from '../../src/image/manifest.js';
import { tempDir } from './helpers/context.js';
import { makeExt4, sh } from './helpers/image-tools.js';

// The image commands through the CLI entry (in-process: the bundle is cli.test.ts's business),
// for their exit codes and one-line errors. The image is made by hand with the real tools.

describe('zshield image (CLI)', () => {
  let dir: string;
  let cleanup: () => void;
  let conf: string;
  let out: string[];
  let err: string[];

  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-imgcli-'));
    conf = path.join(dir, 'zshield.conf');
    writeFileSync(
      conf,
      JSON.stringify({
        paths: { stateDir: `${dir}/state`, runDir: `${dir}/run`, eventLog: `${dir}/events.jsonl` },
        log: { file: null },
        image: { dir: `${dir}/images` },
      }),
    );
    out = [];
    err = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out.push(String(s));
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    cleanup();
  });

  const run = (...args: string[]) => main([...args, '-c', conf, '-q'], 'zshield');

  /** An image as `image create` leaves it: .img.zst, .sha256, .manifest.json. */
  function handMade(): string {
    const fs = path.join(dir, 'fs.ext4');
    makeExt4(fs, { dataKiB: 64 });
    sh('mkdir', ['-p', `${dir}/images`]);
    const base = `${dir}/images/zshield-box1-20260301T030000Z`;
    sh('sh', [
      '-c',
      `e2image -ra '${fs}' '${dir}/fs.raw' 2>/dev/null && tar --sparse -cf - -C '${dir}' --transform=s,.*,filesystem.raw, fs.raw | zstd -q --check -o '${base}.img.zst'`,
    ]);
    const sha256 = sh('sha256sum', [`${base}.img.zst`]).split(' ')[0]!;
    writeFileSync(`${base}.sha256`, `${sha256}  zshield-box1-20260301T030000Z.img.zst\n`);
    const size = 32 * 1024 * 1024;
    const m: Manifest = {
      format: MANIFEST_FORMAT,
      image: 'zshield-box1-20260301T030000Z.img.zst',
      createdAt: '2026-03-01T03:05:00.000Z',
      agent: { name: 'zshield', version: 'test' },
      host: { hostname: 'box1', kind: 'box1' },
      source: {
        vg: 'vgroup',
        lv: 'lv-root',
        snapshot: 'snap0',
        kind: 'snap0',
        snapshotTime: '2026-03-01T03:00:00.000Z',
        snapshotReason: 'daily',
        lvSizeBytes: size,
      },
      filesystem: {
        type: 'ext4',
        uuid: null,
        label: null,
        blockSize: 4096,
        blockCount: size / 4096,
        freeBlocks: 0,
        sizeBytes: size,
        usedBytes: 1024 * 1024,
      },
      compression: { format: 'zstd', command: ['zstd', '--check'], frameChecksum: true },
      archive: { format: 'tar-sparse', member: 'filesystem.raw' },
      identity: null,
      sizes: { imageBytes: readFileSync(`${base}.img.zst`).length, rawBytes: size },
      checksums: { sha256 },
      verification: { at: '2026-03-01T03:05:00.000Z', fsck: 'clean', contains: ['/etc/fstab'], tries: 1 },
      durationMs: 1,
    };
    writeFileSync(`${base}.manifest.json`, JSON.stringify(m));
    return `${base}.img.zst`;
  }

  it('list, verify (quick and full): exit 0', async () => {
    const image = handMade();
    expect(await run('image', 'list', '--json')).toBe(0);
    expect(JSON.parse(out.join(''))).toEqual([
      expect.objectContaining({ file: image, host: 'box1', complete: true, fsck: 'clean', problem: null }),
    ]);
    out.length = 0;
    expect(await run('image', 'verify', '--quick', image)).toBe(0);
    expect(out.join('')).toMatch(/^image verified: .*, checksum only\)\n$/);
    out.length = 0;
    expect(await run('image', 'verify', image)).toBe(0);
    expect(out.join('')).toMatch(/file system clean, holds \/etc\/fstab\)\n$/);
    expect(err).toEqual([]);
  });

  it('a flipped byte: verify and restore exit 10 with one line', async () => {
    const image = handMade();
    const buf = readFileSync(image);
    buf[buf.length >> 1]! ^= 0x02;
    writeFileSync(image, buf);
    expect(await run('image', 'verify', image)).toBe(10);
    expect(err[0]).toMatch(/^zshield: zshield-box1-20260301T030000Z\.img\.zst does not match its checksum: /);
    err.length = 0;
    // Refused before any LVM tool is looked for (none is needed to see the image is bad).
    expect(await run('image', 'restore', '--yes', image)).toBe(10);
    expect(err[0]).toMatch(/does not match its checksum/);
  });

  it('image.dir that is a regular file: list exits 5 with one line naming the path (issue 13.7)', async () => {
    const file = `${dir}/images`;
    writeFileSync(file, 'not a directory');
    expect(await run('image', 'list')).toBe(5);
    expect(err[0]).toBe(`zshield: image.dir ${file} is not a directory\n`);
    expect(err.join('')).not.toMatch(/internal error|ENOTDIR|a bug/);
  });

  it('usage errors: exit 2', async () => {
    expect(await run('image', 'verify', path.join(dir, 'disk.img'))).toBe(2);
    expect(err[0]).toMatch(/is not named like a zshield image/);
    expect(await run('image', 'prune', '--keep', '0')).toBe(2);
    expect(await run('image')).toBe(2);
  });
});
