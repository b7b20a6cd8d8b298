import type { Command } from './command.js';

/**
 * Mount points of a running system whose contents are never copied into another root (the golden
 * medium, a new lv-root): kernel file systems, run-time state, removable media. The directories
 * themselves are made empty in the copy.
 */
export const SYSTEM_MOUNT_POINTS = [
  '/proc',
  '/sys',
  '/dev',
  '/run',
  '/tmp',
  '/mnt',
  '/media',
  '/lost+found',
  '/var/tmp',
];

/** A mutating command of a destructive plan (generous timeout: disks under load are slow). */
export function mutating(file: string, args: string[], extra: Partial<Command> = {}): Command {
  return { file, args, mutates: true, timeoutMs: 600_000, ...extra };
}
