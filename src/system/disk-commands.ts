import type { Command, ToolArgv } from './command.js';
import { mutating } from './root-copy.js';

/**
 * Every blockdev, wipefs, sfdisk and mkfs command line of zshield, each written once, and the one
 * sequence that erases a disk and writes its new partition table. Pure: the caller wraps an argv
 * into its Command with its own flags.
 */

/** blockdev --getsize64 DEVICE: the size in bytes on stdout. Reads only. */
export const blockdevSizeArgv = (device: string): ToolArgv => ['blockdev', ['--getsize64', device]];

/** blockdev --flushbufs DEVICE: drops the kernel's cached blocks of the device (its data is unchanged). */
export const blockdevFlushArgv = (device: string): ToolArgv => ['blockdev', ['--flushbufs', device]];

/** wipefs -a -q DEVICE: every signature (file system, LVM, partition table) erased. */
export const wipefsArgv = (device: string): ToolArgv => ['wipefs', ['-a', '-q', device]];

/**
 * sfdisk, told to wipe old signatures on the disk and on the new partitions, reading the new table
 * from stdin (the caller's `input`).
 */
export const sfdiskWipeArgv = (disk: string): ToolArgv => [
  'sfdisk',
  ['--wipe', 'always', '--wipe-partitions', 'always', '-q', disk],
];

export interface Ext4Options {
  /** `-F`: make it even over an existing file system or on a whole device. */
  force?: boolean;
  /** `-U UUID`: chosen beforehand, so fstab or a VG tag can name it. */
  uuid?: string;
  /** `-L LABEL` (ext4 takes at most 16 bytes). */
  label?: string;
}

/** mkfs.ext4 -q [-F] [-U UUID] [-L LABEL] DEVICE */
export const mkfsExt4Argv = (device: string, o: Ext4Options = {}): ToolArgv => [
  'mkfs.ext4',
  [
    '-q',
    ...(o.force ? ['-F'] : []),
    ...(o.uuid !== undefined ? ['-U', o.uuid] : []),
    ...(o.label !== undefined ? ['-L', o.label] : []),
    device,
  ],
];

/** A step of a plan (plan/plan.ts CommandStep has this shape; system/ does not import plan/). */
export interface DiskStep {
  title: string;
  command: Command;
}

/**
 * Erasing a disk for a new layout (golden prepare, factory reset): the signatures on each of its
 * partitions, then on the disk itself, then the new partition table from `sfdiskScript`. Separate
 * parts, because the factory reset wipes in its cleanup stage and partitions at the start of the
 * next; golden prepare runs them in a row.
 */
export function freshDiskSteps(
  disk: { path: string; partitions: readonly { path: string }[] },
  sfdiskScript: string,
): { wipe: DiskStep[]; partition: DiskStep } {
  return {
    wipe: [
      ...disk.partitions.map((p) => ({
        title: `wipe signatures on ${p.path}`,
        command: mutating(...wipefsArgv(p.path)),
      })),
      { title: `wipe the partition table of ${disk.path}`, command: mutating(...wipefsArgv(disk.path)) },
    ],
    partition: {
      title: `partition ${disk.path}`,
      command: mutating(...sfdiskWipeArgv(disk.path), { input: sfdiskScript }),
    },
  };
}
