import { isMountPoint } from '../system/mounts.js';
import { existsSync, lstatSync, readFileSync, readdirSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { asset } from '../assets.js';
import type { Context } from '../context.js';
import { formatBytes } from '../config/size.js';
import { RefusedError } from '../errors.js';
import type { Step } from '../plan/plan.js';
import type { Disk } from '../system/disks.js';
import { mutating } from '../system/root-copy.js';
import { packageInstalled } from './units.js';
import { umountArgv } from '../system/mount-commands.js';

/**
 * What the running root offers for making another disk bootable: it is the golden root during a
 * factory reset (the source of the copy) and the prototype during golden prepare. Read-only probes:
 * `which`, one `findmnt`, and files read in node.
 */
export interface GoldenFacts {
  grubInstall: string | null;
  grubMkconfig: string | null;
  /** grub.cfg path inside the root: /boot/grub/grub.cfg (Debian) or /boot/grub2/grub.cfg (CentOS). */
  grubCfg: string;
  initramfsTool: 'update-initramfs' | 'dracut' | null;
  /** The golden root's /etc/fstab, whose foreign lines are kept. */
  fstab: string;
  /** The golden root's /etc/default/grub, or null. */
  defaultGrub: string | null;
  /** File system UUID of the golden root, for the system disk's recovery menu entries. */
  goldenUuid: string | null;
  /** Bytes in use in the root file system and in /boot: what a copy needs room for. */
  rootUsedBytes: number | null;
  bootUsedBytes: number | null;
  /** Where systemd is the init: the units a new root gets installed and enabled (both). */
  systemdUnits?: { boot: string; daemon: string; packaged?: boolean };
}

/** What the prototype system (the running root, the source of a golden medium) offers. */
export interface PrototypeFacts {
  grubInstall: string | null;
  grubMkconfig: string | null;
  grubCfg: string;
  fstab: string;
  /** The newest kernel and its initramfs in /boot (paths), for the recovery entries. */
  kernel: string | null;
  initrd: string | null;
  /** systemd (a unit is installed) or rc.local (a line is added). */
  init: 'systemd' | 'rc.local';
  /** The prototype's rc.local, when init is rc.local. */
  rcLocal: string | null;
  rcLocalPath: string;
  /** Bytes in use in the root file system plus /boot when it is a file system of its own. */
  usedBytes: number | null;
  /** zshield is installed from its package (golden/units.ts packageInstalled). */
  packaged?: boolean;
}

const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : null);

/** Bytes in use in the file system holding `dir` (statfs, no tool), or null when unknown. */
export function usedBytesOf(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return (s.blocks - s.bfree) * s.bsize;
  } catch {
    return null;
  }
}

/** Bytes of the files under `dir` (lstat sizes, recursive): for a small folder such as /boot. */
export function filesBytes(dir: string): number | null {
  try {
    let sum = 0;
    for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (e.isFile()) sum += lstatSync(path.join(e.parentPath, e.name)).size;
    }
    return sum;
  } catch {
    return null;
  }
}

export async function probeGoldenRoot(ctx: Pick<Context, 'runner'>): Promise<GoldenFacts> {
  const which = async (...names: string[]) => {
    for (const n of names) if (await ctx.runner.which(n)) return n;
    return null;
  };
  const grubInstall = await which('grub-install', 'grub2-install');
  const grubMkconfig = await which('grub-mkconfig', 'grub2-mkconfig');
  let goldenUuid: string | null = null;
  try {
    const r = await ctx.runner.run({ file: 'findmnt', args: ['-n', '-o', 'UUID', '/'], mutates: false });
    goldenUuid = r.stdout.trim() || null;
  } catch {
    goldenUuid = null;
  }
  return {
    grubInstall,
    grubMkconfig,
    grubCfg: grubMkconfig === 'grub2-mkconfig' ? '/boot/grub2/grub.cfg' : '/boot/grub/grub.cfg',
    initramfsTool: (await which('update-initramfs'))
      ? 'update-initramfs'
      : (await which('dracut'))
        ? 'dracut'
        : null,
    fstab: read('/etc/fstab') ?? '',
    defaultGrub: read('/etc/default/grub'),
    goldenUuid,
    rootUsedBytes: usedBytesOf('/'),
    // /boot inside the root: statfs would count the whole root; add up its files instead.
    bootUsedBytes: isMountPoint('/boot') ? usedBytesOf('/boot') : filesBytes('/boot'),
    ...(existsSync('/run/systemd/system')
      ? {
          systemdUnits: {
            boot: asset('bootUnit'),
            daemon: asset('daemonUnit'),
            packaged: packageInstalled(),
          },
        }
      : {}),
  };
}

export async function probePrototype(ctx: Pick<Context, 'runner'>): Promise<PrototypeFacts> {
  const golden = await probeGoldenRoot(ctx);
  let kernels: string[] = [];
  try {
    kernels = readdirSync('/boot')
      .filter((f) => /^vmlinu[xz]-/.test(f))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  } catch {
    kernels = [];
  }
  const kernel = kernels.at(-1) ?? null;
  const version = kernel?.replace(/^vmlinu[xz]-/, '') ?? '';
  const initrd = [`initrd.img-${version}`, `initramfs-${version}.img`, `initrd-${version}`].find(
    (f) => kernel && existsSync(`/boot/${f}`),
  );
  const rcLocalPath = existsSync('/etc/rc.d') ? '/etc/rc.d/rc.local' : '/etc/rc.local';
  // /boot on its own file system is copied too; inside the root it is already counted.
  const separateBoot = isMountPoint('/boot');
  const root = golden.rootUsedBytes;
  return {
    grubInstall: golden.grubInstall,
    grubMkconfig: golden.grubMkconfig,
    grubCfg: golden.grubCfg,
    fstab: golden.fstab,
    kernel: kernel ? `/boot/${kernel}` : null,
    initrd: initrd ? `/boot/${initrd}` : null,
    init: existsSync('/run/systemd/system') ? 'systemd' : 'rc.local',
    rcLocal: existsSync(rcLocalPath) ? readFileSync(rcLocalPath, 'utf8') : null,
    rcLocalPath,
    usedBytes: root === null ? null : root + (separateBoot ? (golden.bootUsedBytes ?? 0) : 0),
    packaged: packageInstalled(),
  };
}

/**
 * A check of a plan: the target has room for what is copied onto it (the copy would otherwise fail
 * after the target was erased). Unknown use (statfs failed) passes, and the plan says so.
 */
export function roomCheck(
  what: string,
  used: number | null,
  room: number,
): { title: string; run: () => void } {
  return {
    title: `${what} has room for ${used === null ? 'the copy (size of the source unknown)' : formatBytes(used)}`,
    run: () => {
      if (used !== null && used > room * 0.95) {
        throw new RefusedError(
          `${what} is too small: ${formatBytes(room)} for ${formatBytes(used)} in use in the source`,
          { hint: 'use a larger disk, or free space in the source; nothing was written' },
        );
      }
    },
  };
}

export const describeDisk = (d: Disk): string =>
  `${d.path} (${formatBytes(d.sizeBytes)}${d.serial ? `, serial ${d.serial}` : ''}${d.model ? `, ${d.model}` : ''})`;

/** An `always` step: unmount what a failed step left mounted (skipped when it is not mounted). */
export function unmountIfMounted(dir: string): Step {
  return {
    title: `unmount ${dir} if a failure left it mounted`,
    when: { text: `if ${dir} is still mounted`, holds: () => isMountPoint(dir) },
    command: { ...mutating(...umountArgv(dir)), runsAfterAbort: true },
  };
}
