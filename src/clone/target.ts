import { readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import { type Disk, probeDisks, runningRootDisks } from '../system/disks.js';

/** Where a clone is written: the box's golden medium (by serial) or, named explicitly, a file or device. */
export interface CloneTarget {
  path: string;
  /** Bytes available; null for a regular file (it grows). */
  sizeBytes: number | null;
  isBlock: boolean;
  describe: string;
}

export interface TargetRequest {
  serial?: string;
  file?: string;
}

/**
 * `--target SERIAL` (or disks.golden.serial in the config) or `--target-file PATH`. Never the disk
 * the running system booted from, never a disk with anything mounted or in use: a clone erases it.
 */
export async function resolveCloneTarget(ctx: Context, req: TargetRequest): Promise<CloneTarget> {
  if (req.serial && req.file) throw new UsageError('give --target or --target-file, not both');
  if (req.file) return fileTarget(ctx, req.file);
  const serial = req.serial ?? ctx.config.disks.golden.serial;
  if (!serial) {
    throw new UsageError('no target: give --target SERIAL (or set disks.golden.serial in the config)');
  }
  const probe = await probeDisks(ctx.runner);
  const matches = probe.disks.filter((d) => d.serial === serial || (d.wwn !== '' && d.wwn === serial));
  if (matches.length === 0) {
    throw new NotFoundError(`no disk with serial or WWN "${serial}"`, {
      hint: `disks seen: ${probe.disks.map(describe).join('; ') || 'none'}`,
    });
  }
  if (matches.length > 1) throw new RefusedError(`more than one disk matches "${serial}"`);
  const disk = matches[0]!;
  refuseInUse(disk.name, probe.bootDisks, disk.mounted, describe(disk));
  if (disk.readOnly) throw new RefusedError(`${describe(disk)} is read-only`);
  return { path: disk.path, sizeBytes: disk.sizeBytes, isBlock: true, describe: describe(disk) };
}

const describe = (d: Disk) =>
  `${d.path} (${formatBytes(d.sizeBytes)}${d.serial ? `, serial ${d.serial}` : ''}${d.model ? `, ${d.model}` : ''})`;

function refuseInUse(
  name: string,
  bootDisks: readonly string[],
  inUse: readonly string[],
  what: string,
): void {
  if (bootDisks.includes(name)) {
    throw new RefusedError(`${what} is the disk the running system booted from; it is never a clone target`);
  }
  if (inUse.length > 0)
    throw new RefusedError(`${what} is in use (${inUse.join(', ')}); nothing was written`);
}

async function fileTarget(ctx: Context, file: string): Promise<CloneTarget> {
  const abs = path.resolve(file);
  let st: ReturnType<typeof statSync> | null = null;
  try {
    st = statSync(abs);
  } catch {
    st = null;
  }
  if (!st) return { path: abs, sizeBytes: null, isBlock: false, describe: `${abs} (new file)` };
  if (st.isDirectory()) throw new UsageError(`${abs} is a directory, not a file or device`);
  if (!st.isBlockDevice()) return { path: abs, sizeBytes: null, isBlock: false, describe: `${abs} (file)` };
  const name = diskNameOf(st.rdev);
  refuseInUse(name, runningRootDisks(), usersOf(abs, name), abs);
  const res = await ctx.runner.run({ file: 'blockdev', args: ['--getsize64', abs], mutates: false });
  const size = Number(res.stdout.trim());
  return { path: abs, sizeBytes: size, isBlock: true, describe: `${abs} (${formatBytes(size)})` };
}

/** The whole disk a block device belongs to (a partition's parent), by its sysfs folder. */
function diskNameOf(rdev: number): string {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff);
  const sys = realpathSync(`/sys/dev/block/${major}:${minor}`);
  const isPart = readOr(path.join(sys, 'partition')) !== '';
  return path.basename(isPart ? path.dirname(sys) : sys);
}

/** Mounted or held (device-mapper, md) anywhere on the disk. */
function usersOf(devPath: string, disk: string): string[] {
  const out: string[] = [];
  const mounts = readOr('/proc/self/mounts').split('\n');
  const onDisk = new RegExp(`^/dev/${disk}(p?\\d+)?$`);
  for (const line of mounts) {
    const dev = line.split(' ')[0] ?? '';
    if (dev === devPath || onDisk.test(dev)) out.push(`${dev} mounted`);
  }
  try {
    for (const h of readdirSync(`/sys/block/${disk}/holders`)) out.push(`held by ${h}`);
  } catch {
    // A disk without a holders folder holds nothing.
  }
  return out;
}

function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
