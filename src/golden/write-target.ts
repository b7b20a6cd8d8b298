import { type Stats, readFileSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { NotFoundError, RefusedError, UsageError } from '../errors.js';
import { type Disk, probeDisks, runningRootDisks } from '../system/disks.js';
import { commandOf } from '../system/command.js';
import { blockdevFlushArgv, blockdevSizeArgv } from '../system/disk-commands.js';

/** Where a clone is written: the box's golden medium (by serial) or, named explicitly, a file or device. */
export interface CloneTarget {
  path: string;
  /** Bytes available; null for a regular file (it grows). */
  sizeBytes: number | null;
  isBlock: boolean;
  describe: string;
}

/**
 * What a writer to the target runs to drop the kernel's cached blocks of it (blockdev --flushbufs,
 * the golden image write and the clone receive): a block device only.
 */
export function targetFlush(ctx: Context, target: CloneTarget): (() => Promise<void>) | undefined {
  return target.isBlock
    ? async () => {
        await ctx.runner.run(commandOf(blockdevFlushArgv(target.path), { mutates: true }));
      }
    : undefined;
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
  refuseInUse(
    disk.name,
    probe.bootDisks,
    [...disk.mounted, ...usersOf(disk.path, disk.name)],
    describe(disk),
  );
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
  if (!st.isBlockDevice()) {
    refuseInUse('', [], fileUsers(abs, st), abs);
    return { path: abs, sizeBytes: null, isBlock: false, describe: `${abs} (file)` };
  }
  const name = diskNameOf(st.rdev);
  refuseInUse(name, runningRootDisks(), usersOf(abs, name), abs);
  const res = await ctx.runner.run(commandOf(blockdevSizeArgv(abs), { mutates: false }));
  const size = Number(res.stdout.trim());
  return { path: abs, sizeBytes: size, isBlock: true, describe: `${abs} (${formatBytes(size)})` };
}

/** The whole disk a block device belongs to (a partition's parent), by its sysfs folder. */
function diskNameOf(rdev: number): string {
  const { major, minor } = majorMinor(rdev);
  const sys = realpathSync(`/sys/dev/block/${major}:${minor}`);
  const isPart = readOr(path.join(sys, 'partition')) !== '';
  return path.basename(isPart ? path.dirname(sys) : sys);
}

/**
 * Every way a disk can be in use: mounted, held (device-mapper, md), active swap, open for writing
 * by another process, anywhere on the disk (the disk or one of its partitions).
 */
export function usersOf(devPath: string, disk: string, proc = '/proc', sys = '/sys'): string[] {
  const out: string[] = [];
  const onDisk = new RegExp(`^/dev/${disk}(p?\\d+)?$`);
  const isOurs = (dev: string) => dev === devPath || onDisk.test(dev);
  for (const line of readOr(`${proc}/self/mounts`).split('\n')) {
    const dev = line.split(' ')[0] ?? '';
    if (isOurs(dev)) out.push(`${dev} mounted`);
  }
  // /proc/swaps: a header line, then "FILENAME TYPE SIZE USED PRIORITY" per active swap area.
  for (const line of readOr(`${proc}/swaps`).split('\n').slice(1)) {
    const dev = line.split(/\s+/)[0] ?? '';
    if (dev && isOurs(dev)) out.push(`${dev} is active swap`);
  }
  for (const part of [disk, ...partitionsOf(disk, sys)]) {
    for (const h of listOr(`${sys}/class/block/${part}/holders`)) out.push(`${part} held by ${h}`);
  }
  const parts = new Set([disk, ...partitionsOf(disk, sys)]);
  out.push(
    ...writers(proc, (st) => st.isBlockDevice() && parts.has(blockNameOf(st.rdev, sys))).map(
      (w) => `open for writing by ${w}`,
    ),
  );
  return out;
}

/**
 * A regular file is in use when it backs a loop device (/sys/block/loop*\/loop/backing_file: what
 * is written to the file lands under a mounted file system, swap or VG) or another process has it
 * open for writing.
 */
export function fileUsers(
  file: string,
  st: Pick<Stats, 'dev' | 'ino'>,
  proc = '/proc',
  sys = '/sys',
): string[] {
  const out: string[] = [];
  const same = (s: Pick<Stats, 'dev' | 'ino'>) => s.dev === st.dev && s.ino === st.ino;
  for (const loop of listOr(`${sys}/block`).filter((d) => /^loop\d+$/.test(d))) {
    const backing = readOr(`${sys}/block/${loop}/loop/backing_file`);
    if (!backing) continue;
    let match = backing === file;
    try {
      match ||= same(statSync(backing));
    } catch {
      // A deleted backing file ("... (deleted)") is not this one.
    }
    if (match) out.push(`backs /dev/${loop}`);
  }
  out.push(...writers(proc, (s) => s.isFile() && same(s)).map((w) => `open for writing by ${w}`));
  return out;
}

/** Processes other than this one holding a file descriptor open for writing on what `matches`. */
function writers(proc: string, matches: (st: Stats) => boolean): string[] {
  const out = new Set<string>();
  for (const pid of listOr(proc).filter((d) => /^\d+$/.test(d))) {
    if (Number(pid) === process.pid) continue;
    for (const fd of listOr(`${proc}/${pid}/fd`)) {
      let st: Stats;
      try {
        st = statSync(`${proc}/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!matches(st)) continue;
      // fdinfo's flags are octal; the access mode is the low two bits (O_WRONLY 1, O_RDWR 2).
      const flags = /^flags:\s*([0-7]+)/m.exec(readOr(`${proc}/${pid}/fdinfo/${fd}`));
      if (flags && (Number.parseInt(flags[1]!, 8) & 3) !== 0) out.add(`${commOf(proc, pid)} (pid ${pid})`);
    }
  }
  return [...out];
}

function commOf(proc: string, pid: string): string {
  return readOr(`${proc}/${pid}/comm`) || '?';
}

function partitionsOf(disk: string, sys: string): string[] {
  return listOr(`${sys}/class/block/${disk}`).filter((d) => d.startsWith(disk) && d !== disk);
}

/** The kernel name of a block device by its number (sda1, loop3). */
function blockNameOf(rdev: number, sys: string): string {
  const { major, minor } = majorMinor(rdev);
  try {
    return path.basename(readlinkSync(`${sys}/dev/block/${major}:${minor}`));
  } catch {
    return '';
  }
}

function listOr(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function majorMinor(rdev: number): { major: number; minor: number } {
  return { major: Math.floor(rdev / 256) & 0xfff, minor: (rdev & 0xff) | ((rdev >> 12) & ~0xff) };
}

function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
