import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isMountPoint, mountedReadOnly, readMountTable } from '../../src/system/mounts.js';

// The one reader of the mount table (/proc/self/mountinfo), on a table written here.
const dir = mkdtempSync(path.join(tmpdir(), 'zs-mounts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const table = (lines: string[]) => {
  const f = path.join(dir, `mountinfo-${lines.length}-${Math.random().toString(16).slice(2)}`);
  writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
};

describe('mount table', () => {
  const info = table([
    '1 0 0:2 / / rw - rootfs rootfs rw',
    '22 1 254:1 / / ro,relatime shared:1 - ext4 /dev/vda1 ro',
    '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw',
    '40 22 254:2 / /var/lib/zshield/history/mnt ro,relatime - ext4 /dev/loop0 ro,noload',
    '41 22 254:3 / /mnt/with\\040space rw,relatime - ext4 /dev/vdb1 rw',
    '42 22 254:4 / /srv/sb rw,relatime - ext4 /dev/vdc1 ro',
  ]);

  it('lists each mount point (octal escapes decoded) with its options', () => {
    const t = readMountTable(info);
    expect(t.map((m) => m.mountPoint)).toEqual([
      '/',
      '/',
      '/proc',
      '/var/lib/zshield/history/mnt',
      '/mnt/with space',
      '/srv/sb',
    ]);
    expect(t[3]!.options).toEqual(['ro', 'relatime', 'ro', 'noload']);
  });

  it('tells a mount point, and one read-only by the last mount there or by its file system', () => {
    expect(isMountPoint('/var/lib/zshield/history/mnt', info)).toBe(true);
    expect(isMountPoint('/mnt/with space', info)).toBe(true);
    expect(isMountPoint('/mnt', info)).toBe(false);
    // The rootfs under / is rw; the root in use (the last mount on /) is ro.
    expect(mountedReadOnly('/', info)).toBe(true);
    expect(mountedReadOnly('/mnt/with space', info)).toBe(false);
    expect(mountedReadOnly('/srv/sb', info)).toBe(true);
    expect(mountedReadOnly('/nowhere', info)).toBe(false);
  });

  it('an unreadable table is an empty one', () => {
    expect(readMountTable(path.join(dir, 'missing'))).toEqual([]);
    expect(isMountPoint('/', path.join(dir, 'missing'))).toBe(false);
  });

  it("reads this machine's own table", () => {
    expect(isMountPoint('/')).toBe(true);
    expect(isMountPoint('/proc')).toBe(true);
  });
});
