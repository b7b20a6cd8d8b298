import { describe, expect, it } from 'vitest';
import { commandOf } from '../../src/system/command.js';
import {
  blockdevFlushArgv,
  blockdevSizeArgv,
  freshDiskSteps,
  mkfsExt4Argv,
  sfdiskWipeArgv,
  wipefsArgv,
} from '../../src/system/disk-commands.js';
import { bindMountArgv, mountArgv, remountArgv, umountArgv } from '../../src/system/mount-commands.js';

// Each tool's command line, written once in src/system/ (issue 22): the exact argv of every form
// the capabilities use.

describe('mount-commands', () => {
  it('mount: device and dir, -t before -o, each only when given', () => {
    expect(mountArgv('/dev/vg/lv', '/mnt/x')).toEqual(['mount', ['/dev/vg/lv', '/mnt/x']]);
    expect(mountArgv('/dev/vdb1', '/b', { type: 'ext4' })).toEqual([
      'mount',
      ['-t', 'ext4', '/dev/vdb1', '/b'],
    ]);
    expect(mountArgv('/dev/vg/snap0', '/r', { options: 'ro,noload' })).toEqual([
      'mount',
      ['-o', 'ro,noload', '/dev/vg/snap0', '/r'],
    ]);
    expect(mountArgv('/dev/vg/s', '/i', { type: 'xfs', options: 'nodev,nosuid,noexec' })).toEqual([
      'mount',
      ['-t', 'xfs', '-o', 'nodev,nosuid,noexec', '/dev/vg/s', '/i'],
    ]);
  });

  it('bind mount, remount ro and rw', () => {
    expect(bindMountArgv('/proc', '/t/proc')).toEqual(['mount', ['--bind', '/proc', '/t/proc']]);
    expect(remountArgv('/', 'rw')).toEqual(['mount', ['-o', 'remount,rw', '/']]);
    expect(remountArgv('/', 'ro')).toEqual(['mount', ['-o', 'remount,ro', '/']]);
  });

  it('umount, with -q only when asked', () => {
    expect(umountArgv('/t/boot')).toEqual(['umount', ['/t/boot']]);
    expect(umountArgv('/t/boot', { quiet: true })).toEqual(['umount', ['-q', '/t/boot']]);
    expect(umountArgv('/t/boot', { quiet: false })).toEqual(['umount', ['/t/boot']]);
  });
});

describe('disk-commands', () => {
  it('blockdev, wipefs, sfdisk', () => {
    expect(blockdevSizeArgv('/dev/sdb')).toEqual(['blockdev', ['--getsize64', '/dev/sdb']]);
    expect(blockdevFlushArgv('/dev/sdb')).toEqual(['blockdev', ['--flushbufs', '/dev/sdb']]);
    expect(wipefsArgv('/dev/sdb1')).toEqual(['wipefs', ['-a', '-q', '/dev/sdb1']]);
    expect(sfdiskWipeArgv('/dev/sdb')).toEqual([
      'sfdisk',
      ['--wipe', 'always', '--wipe-partitions', 'always', '-q', '/dev/sdb'],
    ]);
  });

  it('mkfs.ext4: -q, then -F, -U, -L in that order, each only when given', () => {
    expect(mkfsExt4Argv('/dev/vg/new', { label: 'zs-root' })).toEqual([
      'mkfs.ext4',
      ['-q', '-L', 'zs-root', '/dev/vg/new'],
    ]);
    expect(mkfsExt4Argv('/dev/vdb1', { force: true, uuid: 'u-1', label: 'zs-boot' })).toEqual([
      'mkfs.ext4',
      ['-q', '-F', '-U', 'u-1', '-L', 'zs-boot', '/dev/vdb1'],
    ]);
    expect(mkfsExt4Argv('/dev/vg/lv-data', { force: true, label: 'lv-data' })).toEqual([
      'mkfs.ext4',
      ['-q', '-F', '-L', 'lv-data', '/dev/vg/lv-data'],
    ]);
    expect(mkfsExt4Argv('/dev/x')).toEqual(['mkfs.ext4', ['-q', '/dev/x']]);
  });

  it('freshDiskSteps: each partition wiped, then the disk, then the new table from stdin', () => {
    const disk = { path: '/dev/vdb', partitions: [{ path: '/dev/vdb1' }, { path: '/dev/vdb2' }] };
    const script = 'label: dos\nstart=2048, type=83, bootable\n';
    const { wipe, partition } = freshDiskSteps(disk, script);
    const cmd = (args: string[]) => ({ mutates: true, timeoutMs: 600_000, args });
    expect(wipe).toEqual([
      {
        title: 'wipe signatures on /dev/vdb1',
        command: { file: 'wipefs', ...cmd(['-a', '-q', '/dev/vdb1']) },
      },
      {
        title: 'wipe signatures on /dev/vdb2',
        command: { file: 'wipefs', ...cmd(['-a', '-q', '/dev/vdb2']) },
      },
      {
        title: 'wipe the partition table of /dev/vdb',
        command: { file: 'wipefs', ...cmd(['-a', '-q', '/dev/vdb']) },
      },
    ]);
    expect(partition).toStrictEqual({
      title: 'partition /dev/vdb',
      command: {
        file: 'sfdisk',
        ...cmd(['--wipe', 'always', '--wipe-partitions', 'always', '-q', '/dev/vdb']),
        input: script,
      },
    });
    expect(freshDiskSteps({ path: '/dev/vdc', partitions: [] }, script).wipe.map((s) => s.title)).toEqual([
      'wipe the partition table of /dev/vdc',
    ]);
  });

  it('commandOf: the argv and exactly the fields given', () => {
    expect(commandOf(umountArgv('/m'), { mutates: true, runsAfterAbort: true })).toStrictEqual({
      file: 'umount',
      args: ['/m'],
      mutates: true,
      runsAfterAbort: true,
    });
    expect(commandOf(blockdevSizeArgv('/dev/sdb'), { mutates: false })).toStrictEqual({
      file: 'blockdev',
      args: ['--getsize64', '/dev/sdb'],
      mutates: false,
    });
  });
});
