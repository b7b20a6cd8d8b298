import type { ToolArgv } from './command.js';

/**
 * Every mount and umount command line of zshield, each written once. Pure: the caller wraps the
 * argv into its Command (`mutating(...argv)` or `commandOf(argv, {...})`) with its own flags.
 */

export interface MountOptions {
  /** `-t TYPE`: the file system type, when the caller knows it. */
  type?: string;
  /** `-o OPTIONS`, comma-separated (e.g. `ro,noload`). */
  options?: string;
}

/** mount [-t TYPE] [-o OPTIONS] DEVICE DIR */
export const mountArgv = (device: string, dir: string, o: MountOptions = {}): ToolArgv => [
  'mount',
  [
    ...(o.type !== undefined ? ['-t', o.type] : []),
    ...(o.options !== undefined ? ['-o', o.options] : []),
    device,
    dir,
  ],
];

/** mount --bind FROM TO */
export const bindMountArgv = (from: string, to: string): ToolArgv => ['mount', ['--bind', from, to]];

/** mount -o remount,ro|rw DIR: the file system at DIR made read-only or writable in place. */
export const remountArgv = (dir: string, mode: 'ro' | 'rw'): ToolArgv => [
  'mount',
  ['-o', `remount,${mode}`, dir],
];

/** umount [-q] DIR; `quiet`: no message when nothing is mounted there (util-linux -q). */
export const umountArgv = (dir: string, o: { quiet?: boolean } = {}): ToolArgv => [
  'umount',
  [...(o.quiet ? ['-q'] : []), dir],
];
