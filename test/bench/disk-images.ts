// Disk images of the QEMU bench, read and changed offline (qemu not running): partitions, GRUB's
// environment block (appliance.ts boots them).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const _MiB = 1024 * 1024;

// ------------------------------------------------------------------------------------------------
// Disk images, offline (qemu not running): partitions, GRUB's environment block
// ------------------------------------------------------------------------------------------------

export interface MbrPartition {
  /** 1..4 */
  number: number;
  /** MBR type: 0x83 Linux, 0x8e Linux LVM, ... */
  type: number;
  bootable: boolean;
  startBytes: number;
  sizeBytes: number;
}

/** The primary partitions of a disk image with a DOS partition table. */
export function readPartitionTable(imagePath: string): MbrPartition[] {
  const mbr = Buffer.alloc(512);
  const fd = fs.openSync(imagePath, 'r');
  try {
    fs.readSync(fd, mbr, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) {
    throw new Error(`${imagePath}: no DOS partition table (no MBR signature)`);
  }
  const parts: MbrPartition[] = [];
  for (let i = 0; i < 4; i++) {
    const e = mbr.subarray(446 + 16 * i, 446 + 16 * (i + 1));
    const type = e[4]!;
    const start = e.readUInt32LE(8);
    const count = e.readUInt32LE(12);
    if (type === 0 || count === 0) continue;
    parts.push({
      number: i + 1,
      type,
      bootable: e[0] === 0x80,
      startBytes: start * 512,
      sizeBytes: count * 512,
    });
  }
  return parts;
}

/** `<workDir>/<diskName>.img`, which must exist and must not be in use by a running qemu. */
export function diskImagePath(workDir: string, diskName: string): string {
  const file = path.join(path.resolve(workDir), `${diskName}.img`);
  if (!fs.existsSync(file)) throw new Error(`no disk image ${file}`);
  return file;
}

/** Who else may hold a disk image open: appliance.ts adds its running guests. */
export const imageUsers: ((file: string) => boolean)[] = [];

function assertOffline(file: string): void {
  if (imageUsers.some((inUse) => inUse(file))) {
    throw new Error(`${file} is in use by a running appliance: power it off first`);
  }
  // Also a qemu started by another process (another test run).
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.startsWith('qemu-system') && cmd.includes(`file=${file.replace(/,/g, ',,')},`)) {
      throw new Error(`${file} is in use by qemu (pid ${pid}): power it off first`);
    }
  }
}

/** Run a host command synchronously; a failure throws with its output. */
function hostRun(file: string, args: string[]): string {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(
      `${file} ${args.join(' ')} failed (${r.error ?? `exit ${r.status}`}): ${r.stderr}${r.stdout}`,
    );
  }
  return r.stdout;
}

/**
 * Mount partition `partition` (1..4) of a disk image on the host (`mount -o loop,offset=...`:
 * partition scanning of loop devices creates no pN nodes here), run `fn` with the mount point,
 * unmount. Synchronous. The image must not be in use by qemu. Needs root.
 */
export function withImagePartition<T>(
  imagePath: string,
  partition: number,
  fn: (mountPoint: string) => T,
): T {
  assertOffline(imagePath);
  const part = readPartitionTable(imagePath).find((p) => p.number === partition);
  if (!part) throw new Error(`${imagePath}: no partition ${partition}`);
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'zsb-mnt-'));
  try {
    hostRun('mount', ['-o', `loop,offset=${part.startBytes},sizelimit=${part.sizeBytes}`, imagePath, mnt]);
  } catch (e) {
    fs.rmdirSync(mnt);
    throw e;
  }
  try {
    return fn(mnt);
  } finally {
    const left = unmountRetrying(mnt);
    if (left === undefined) fs.rmdirSync(mnt);
    else console.error(`withImagePartition: ${mnt} stays mounted: ${left}`);
  }
}

/**
 * umount, retried while the file system is busy, until it is let go (bounded only against a hang:
 * was 2 s, a bet on how fast the host lets go). Returns the last error when it stays mounted.
 */
function unmountRetrying(mnt: string): unknown {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      hostRun('umount', [mnt]);
      return undefined;
    } catch (e) {
      if (Date.now() > deadline) return e;
      spawnSync('sleep', ['0.1']);
    }
  }
}

/** Where GRUB's files may be, relative to the partition's root (a root with /boot, or a /boot). */
const GRUB_DIRS = ['boot/grub', 'grub', 'boot/grub2', 'grub2'];

/** Run fn on the grubenv path of the first Linux partition (or `partition`) holding a grub.cfg. */
function withGrubEnv<T>(
  workDir: string,
  diskName: string,
  partition: number | undefined,
  fn: (grubenv: string) => T,
): T {
  const image = diskImagePath(workDir, diskName);
  const candidates =
    partition !== undefined
      ? [partition]
      : readPartitionTable(image)
          .filter((p) => p.type === 0x83)
          .map((p) => p.number);
  for (const n of candidates) {
    const found = withImagePartition(image, n, (mnt) => {
      const dir = GRUB_DIRS.find((d) => fs.existsSync(path.join(mnt, d, 'grub.cfg')));
      if (!dir) return { ok: false as const };
      return { ok: true as const, value: fn(path.join(mnt, dir, 'grubenv')) };
    });
    if (found.ok) return found.value;
  }
  throw new Error(`no partition of ${image} holds a GRUB configuration (${GRUB_DIRS.join('|')}/grub.cfg)`);
}

/**
 * Choose the GRUB menu entry of the next boot of a disk, as an operator would pick it in the menu:
 * sets `next_entry=<entry>` (a menuentry id such as `zshield-latest`, or a title) in the grubenv
 * next to the disk's grub.cfg (created with grub-editenv when missing). Offline (the disk's qemu
 * must not run) and synchronous. grub-mkconfig's 00_header boots that entry once and clears it
 * (save_env). The partition is the first Linux one holding a grub.cfg unless given.
 */
export function setNextBootEntry(
  workDir: string,
  diskName: string,
  entry: string,
  opts: { partition?: number } = {},
): void {
  if (!entry || /[\n\r]/.test(entry)) throw new Error(`bad GRUB entry ${JSON.stringify(entry)}`);
  withGrubEnv(workDir, diskName, opts.partition, (env) => {
    if (!fs.existsSync(env)) hostRun('grub-editenv', [env, 'create']);
    hostRun('grub-editenv', [env, 'set', `next_entry=${entry}`]);
  });
}

/** The variables of a disk's grubenv ({} when there is none), read offline. */
export function readGrubEnv(
  workDir: string,
  diskName: string,
  opts: { partition?: number } = {},
): Record<string, string> {
  return withGrubEnv(workDir, diskName, opts.partition, (env) => {
    const vars: Record<string, string> = {};
    if (!fs.existsSync(env)) return vars;
    for (const line of hostRun('grub-editenv', [env, 'list']).split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return vars;
  });
}
